"""Who is calling: storefront API keys, end-user JWTs, admin API keys; and which user acts."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

import jwt
from flask import g, request

from api.errors import ApiError
from inventory.config import Settings
from inventory.validation import is_user_id

API_KEY_HEADER = "X-API-Key"
Kind = Literal["storefront", "user", "admin"]

SECURITY_SCHEMES = {
    "storefrontKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER,
                      "description": "Storefront API key; the acting user comes as `user_id`."},
    "userJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "End-user JWT; `sub` is the acting user."},
    "adminKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER,
                 "description": "Admin API key."},
}
STOREFRONT_SECURITY = [{"storefrontKey": []}, {"userJwt": []}]
ADMIN_SECURITY = [{"adminKey": []}]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller; `user_id` is set for end-user tokens."""

    kind: Kind
    user_id: str | None = None


def _unauthorized(message: str, **details: str) -> ApiError:
    return ApiError("unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="flashstock"'},
                    **details)


def _matches(candidate: bytes, keys: tuple[bytes, ...]) -> bool:
    """Constant-time membership: every configured key is compared, whatever matches."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate, key)
    return found


class Authenticator:
    """Checks credentials against the configured keys (several valid at once, for rotation)."""

    def __init__(self, settings: Settings) -> None:
        self._storefront = tuple(k.encode() for k in settings.storefront_api_keys if k)
        self._admin = tuple(k.encode() for k in settings.admin_api_keys if k)
        self._jwt_key = settings.jwt_public_key or settings.jwt_secret
        self._jwt_algorithms = list(settings.jwt_algorithms)

    def authenticate(self) -> Principal:
        """The caller of the current request, or 401."""
        return self.authenticate_headers(request.headers.get(API_KEY_HEADER),
                                         request.headers.get("Authorization", ""))

    def authenticate_headers(self, api_key: str | None, authorization: str) -> Principal:
        """The caller presenting this X-API-Key (or None) and Authorization header value, or 401."""
        if api_key is not None:
            candidate = api_key.encode("utf-8", "surrogateescape")
            if _matches(candidate, self._admin):
                return Principal("admin")
            if _matches(candidate, self._storefront):
                return Principal("storefront")
            raise _unauthorized("Invalid API key.", reason="invalid_api_key")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return Principal("user", self._user_from_token(token.strip()))
        raise _unauthorized("Credentials required: an API key or a bearer token.", reason="missing")

    def _user_from_token(self, token: str) -> str:
        if not self._jwt_key:
            raise _unauthorized("Bearer tokens are not accepted here.", reason="jwt_disabled")
        try:
            claims = jwt.decode(token, self._jwt_key, algorithms=self._jwt_algorithms,
                                options={"require": ["sub", "exp"]})
        except jwt.ExpiredSignatureError:
            raise _unauthorized("The token has expired.", reason="expired") from None
        except jwt.InvalidTokenError:
            raise _unauthorized("The token is not valid.", reason="invalid_token") from None
        subject = claims.get("sub")
        if not is_user_id(subject):
            raise _unauthorized("The token's subject is not a valid user id.", reason="invalid_subject")
        return subject


def require(authenticator: Authenticator, *kinds: Kind) -> Principal:
    """Authenticate and insist on one of `kinds` (401 without credentials, 403 with the wrong ones)."""
    principal = allowed(authenticator.authenticate(), kinds)
    g.principal = principal
    return principal


def allowed(principal: Principal, kinds: tuple[Kind, ...]) -> Principal:
    """The principal if it is one of `kinds`, else 403."""
    if principal.kind not in kinds:
        raise ApiError("forbidden", "These credentials do not allow this operation.", kind=principal.kind)
    return principal


def acting_user(given: str | None) -> str:
    """The user the current request acts for (see `user_for`)."""
    return user_for(g.principal, given)


def user_for(principal: Principal, given: str | None) -> str:
    """The token's subject, or `user_id` sent with a storefront key."""
    if principal.kind == "user":
        if given is not None and given != principal.user_id:
            raise ApiError("forbidden", "user_id does not match the token's subject.")
        return principal.user_id  # type: ignore[return-value]
    if not given:
        raise ApiError("invalid_request", "The request is not valid.",
                       fields={"user_id": ["Required with a storefront API key."]})
    return given
