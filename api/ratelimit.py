"""Rate limits per user and per client IP on the reservation endpoints (Flask-Limiter, Redis storage).

Two shared Flask-Limiter buckets cover every reservation endpoint: one per user, one per client IP.
Most endpoints use Flask-Limiter's decorators. The hot path, POST /v1/reservations, hits the very same
buckets (same keys, same fixed-window semantics) through `ReservationLimits.hit`, which increments
both counters and fetches the idempotency record in one pipelined round trip: Flask-Limiter would
spend a round trip per limit plus its own per-request bookkeeping.
"""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Flask, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from redis import Redis
from redis.exceptions import NoScriptError

from api.errors import ApiError
from inventory.config import Settings
from inventory.keys import KeySpace
from inventory.store import MEMORY_URL

USER_SCOPE, IP_SCOPE = "reservations-user", "reservations-ip"

# One Limiter for the process; `init_app` binds it to the app (one app per worker process).
limiter = Limiter(key_func=get_remote_address, strategy="fixed-window", headers_enabled=False,
                  swallow_errors=False)


def user_key() -> str:
    """The acting user's bucket: the token's subject, else `user_id` from the body or query."""
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


per_user = limiter.shared_limit(_user_limit, scope=USER_SCOPE, key_func=user_key)
per_ip = limiter.shared_limit(_ip_limit, scope=IP_SCOPE, key_func=get_remote_address)


def _limited(item: RateLimitItem, retry_after: float) -> ApiError:
    return ApiError("rate_limited", "Too many requests; slow down.", limit=str(item),
                    headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


class ReservationLimits:
    """Hit the per-user and per-IP buckets (and GET one more key) in a single Redis round trip."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.user_item = parse(settings.rate_limit_reservations)
        self.ip_item = parse(settings.rate_limit_reservations_per_ip)
        self.redis = redis

    def hit(self, user: str, ip: str, also_get: str | None = None) -> bytes | None:
        """Count one request against both buckets; 429 if either is over; returns GET `also_get`."""
        storage = limiter.storage
        checks = [(self.user_item, user, USER_SCOPE), (self.ip_item, ip, IP_SCOPE)]
        if not isinstance(storage, RedisStorage):  # embedded mode: in-process counters
            for item, key, scope in checks:
                if not limiter.limiter.hit(item, key, scope):
                    reset_at = limiter.limiter.get_window_stats(item, key, scope).reset_time
                    raise _limited(item, reset_at - time.time())
            return self.redis.get(also_get) if also_get else None
        client = storage.get_connection()
        names = [storage.prefixed_key(item.key_for(key, scope)) for item, key, scope in checks]
        replies = self._pipelined(client, storage.lua_incr_expire, checks, names, also_get)
        for (item, _, _), name, count in zip(checks, names, replies):
            if int(count) > item.amount:
                ttl_ms = client.pttl(name)
                raise _limited(item, (ttl_ms if ttl_ms > 0 else 1000) / 1000)
        return replies[2] if also_get else None

    @staticmethod
    def _pipelined(client: Redis, incr_expire: Any, checks: Any, names: list[str],
                   also_get: str | None) -> list[Any]:
        def run() -> list[Any]:
            # Flask-Limiter's own incr_expire script, by SHA: a redis-py pipeline given the Script
            # object would first ask SCRIPT EXISTS, an extra round trip on every request.
            pipe = client.pipeline(transaction=False)
            for (item, _, _), name in zip(checks, names):
                pipe.evalsha(incr_expire.sha, 1, name, item.get_expiry(), 1)
            if also_get:
                pipe.get(also_get)
            return pipe.execute(raise_on_error=False)

        replies = run()
        if any(isinstance(reply, NoScriptError) for reply in replies):
            client.script_load(incr_expire.script)  # after a Redis restart or SCRIPT FLUSH
            replies = run()
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies


def init_app(app: Flask, settings: Settings, redis: Redis) -> ReservationLimits:
    """Bind the limiter to the app, storing counters in the inventory's Redis (same pool and timeouts)."""
    keys = KeySpace(settings.key_prefix)
    app.config["FLASHSTOCK_RATE_LIMIT_USER"] = settings.rate_limit_reservations
    app.config["FLASHSTOCK_RATE_LIMIT_IP"] = settings.rate_limit_reservations_per_ip
    if settings.redis_url.startswith(MEMORY_URL):
        app.config["RATELIMIT_STORAGE_URI"] = "memory://"
        app.config["RATELIMIT_STORAGE_OPTIONS"] = {}
    else:
        app.config["RATELIMIT_STORAGE_URI"] = settings.redis_url
        app.config["RATELIMIT_STORAGE_OPTIONS"] = {"connection_pool": redis.connection_pool,
                                                   "key_prefix": keys.scoped("rl")}
    limiter._storage_options = {}  # noqa: SLF001 - a new app (tests) brings its own storage options
    limiter.init_app(app)
    # Only decorated limits are used; they are checked by their decorators, so the per-request
    # middleware that looks for default/application limits is pure overhead.
    app.before_request_funcs[None] = [f for f in app.before_request_funcs.get(None, [])
                                      if f != limiter._check_request_limit]  # noqa: SLF001
    # Likewise its after_request hook only writes X-RateLimit headers (disabled) and conditional
    # deductions (unused).
    app.after_request_funcs[None] = [f for f in app.after_request_funcs.get(None, [])
                                     if getattr(f, "args", (None,))[:1] != (limiter,)]
    app.extensions["flashstock_limiter"] = limiter
    return ReservationLimits(settings, redis)
