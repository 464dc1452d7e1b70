"""Dashboard sign-in: an admin API key exchanged for a signed, HttpOnly, SameSite=Strict session cookie.

A browser cannot send X-API-Key by itself, so the key is typed once into a form, checked by the API's own
Authenticator, and the session remembers only an HMAC fingerprint of it: removing the key from
ADMIN_API_KEYS signs its sessions out. POSTs carry a CSRF token bound to the session (on top of SameSite).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from flask import Flask, request, session

from api.auth import Authenticator, allowed
from api.errors import ApiError
from inventory.config import Settings

COOKIE_NAME = "flashstock_dashboard"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
_CONTEXT = b"flashstock-dashboard-session-v1"


def session_secret(settings: Settings) -> bytes:
    """DASHBOARD_SECRET, else a key derived from the admin keys (the same in every worker and host)."""
    if settings.dashboard_secret:
        return settings.dashboard_secret.encode()
    keys = sorted(k for k in settings.admin_api_keys if k)
    if not keys:
        return secrets.token_bytes(32)  # nobody can sign in without admin keys; any secret will do
    return hmac.new(_CONTEXT, "\n".join(keys).encode(), hashlib.sha256).digest()


class DashboardSessions:
    """Signs admins in and out of the dashboard and checks their session and CSRF token."""

    def __init__(self, settings: Settings, authenticator: Authenticator) -> None:
        self._secret = session_secret(settings)
        self._auth = authenticator
        self._lifetime = settings.dashboard_session_seconds
        self._valid = {self._fingerprint(k) for k in settings.admin_api_keys if k}

    def init_app(self, app: Flask, settings: Settings) -> None:
        """Cookie settings of the session: HttpOnly, SameSite=Strict, scoped to /dashboard, bounded lifetime."""
        app.secret_key = self._secret
        app.config.update(
            SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_PATH="/dashboard", SESSION_COOKIE_HTTPONLY=True,
            SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=settings.dashboard_cookie_secure,
            PERMANENT_SESSION_LIFETIME=self._lifetime)

    def _fingerprint(self, key: str) -> str:
        return hmac.new(self._secret, key.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:32]

    def sign_in(self, api_key: str) -> None:
        """Start a session for an admin key (401 unknown key, 403 a non-admin key)."""
        allowed(self._auth.authenticate_headers(api_key, ""), ("admin",))
        session.clear()
        session.permanent = True
        session.update(fp=self._fingerprint(api_key), exp=int(time.time()) + self._lifetime,
                       csrf=secrets.token_urlsafe(32))

    @staticmethod
    def sign_out() -> None:
        """Forget the session (the cookie is cleared in the response)."""
        session.clear()

    def signed_in(self) -> bool:
        """A live session whose admin key is still configured."""
        fingerprint, expires = session.get("fp"), session.get("exp")
        if not isinstance(fingerprint, str) or not isinstance(expires, int):
            return False
        return expires > time.time() and fingerprint in self._valid

    def require(self) -> None:
        """401 in the error envelope unless signed in (for the JSON endpoints)."""
        if not self.signed_in():
            raise ApiError("unauthorized", "Sign in to the dashboard first.", reason="signed_out")

    @staticmethod
    def csrf_token() -> str:
        """This session's CSRF token (created for the sign-in form before there is a signed-in session)."""
        token = session.get("csrf")
        if not isinstance(token, str):
            token = session["csrf"] = secrets.token_urlsafe(32)
        return token

    @staticmethod
    def check_csrf() -> None:
        """403 csrf_failed unless the request carries this session's token (header or form field)."""
        expected = session.get("csrf")
        given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
        if not isinstance(expected, str) or not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError("csrf_failed", "The form or request is missing this session's CSRF token; reload.")
