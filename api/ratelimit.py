"""Rate limits per user and per client IP on the reservation endpoints (Flask-Limiter, Redis storage)."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from redis import Redis

from inventory.config import Settings
from inventory.keys import KeySpace
from inventory.store import MEMORY_URL

# One Limiter for the process; `init_app` binds it to the app (one app per worker process).
limiter = Limiter(key_func=get_remote_address, strategy="fixed-window", headers_enabled=False,
                  swallow_errors=False)


def _user_key() -> str:
    """The acting user: the token's subject, else `user_id` from the body or query (storefront key)."""
    principal = g.get("principal")
    if principal is not None and principal.user_id:
        return f"u:{principal.user_id}"
    body = request.get_json(silent=True) if request.is_json else None
    user = body.get("user_id") if isinstance(body, dict) else None
    user = user or request.args.get("user_id")
    return f"u:{user}" if isinstance(user, str) and user else f"ip:{get_remote_address()}"


def _user_limit() -> str:
    return current_app.config["FLASHSTOCK_RATE_LIMIT_USER"]


def _ip_limit() -> str:
    return current_app.config["FLASHSTOCK_RATE_LIMIT_IP"]


# Shared across every reservation endpoint: one budget per user and one per client IP.
per_user = limiter.shared_limit(_user_limit, scope="reservations-user", key_func=_user_key)
per_ip = limiter.shared_limit(_ip_limit, scope="reservations-ip", key_func=get_remote_address)


def init_app(app: Flask, settings: Settings, redis: Redis) -> None:
    """Bind the limiter to the app, storing counters in the inventory's Redis (same pool and timeouts)."""
    keys = KeySpace(settings.key_prefix)
    app.config["FLASHSTOCK_RATE_LIMIT_USER"] = settings.rate_limit_reservations
    app.config["FLASHSTOCK_RATE_LIMIT_IP"] = settings.rate_limit_reservations_per_ip
    options: dict[str, Any] = {}
    if settings.redis_url.startswith(MEMORY_URL):
        uri = "memory://"
    else:
        uri = settings.redis_url
        options = {"connection_pool": redis.connection_pool, "key_prefix": keys.scoped("rl")}
    app.config["RATELIMIT_STORAGE_URI"] = uri
    app.config["RATELIMIT_STORAGE_OPTIONS"] = options
    limiter._storage = None  # noqa: SLF001 - rebind storage when a new app is created (tests)
    limiter._limiter = None  # noqa: SLF001
    limiter._storage_uri = None  # noqa: SLF001
    limiter._storage_options = {}  # noqa: SLF001
    limiter.init_app(app)
    app.extensions["flashstock_limiter"] = limiter
