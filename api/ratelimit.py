"""Rate limits per user and per client IP on the reservation endpoints (Flask-Limiter, Redis storage).

Two shared Flask-Limiter buckets cover every reservation endpoint: one per user, one per client IP.
Most endpoints use Flask-Limiter's decorators. The hot path, POST /v1/reservations, counts the very
same buckets (same keys, same fixed-window semantics) inside the reserve script itself: admission and
the hold are one Redis round trip, where Flask-Limiter would spend a round trip per limit plus its own
per-request bookkeeping. `ReservationLimits.buckets` names those counters for the core.
"""

from __future__ import annotations

from functools import lru_cache, partial

from flask import Flask, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse
from redis import Redis

from inventory.config import Settings
from inventory.keys import KeySpace
from inventory.models import RateLimit

USER_SCOPE, IP_SCOPE = "reservations-user", "reservations-ip"
_MARK = "\x00"  # in no key prefix, scope or limit: splits limits' key template in exactly two

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


class ReservationLimits:
    """The two buckets a reservation counts against, as the core's RateLimit counters."""

    def __init__(self, settings: Settings, key_prefix: str) -> None:
        self.user_item = parse(settings.rate_limit_reservations)
        self.ip_item = parse(settings.rate_limit_reservations_per_ip)
        self.key_prefix = key_prefix
        # A user's key is limits' own key_for() with the user spliced in: split once around a marker,
        # so each request builds one string (key_for and its argument checks cost ~4 µs per request).
        head, tail = self._bucket(self.user_item, f"u:{_MARK}", scope=USER_SCOPE).key.split(_MARK)
        self._user_key = (head, tail)
        self._user_limit = (self.user_item.amount, self.user_item.get_expiry(), str(self.user_item))
        # A storefront's backends call from a handful of addresses: their buckets are built once.
        self._ip_bucket = lru_cache(maxsize=1024)(partial(self._bucket, self.ip_item, scope=IP_SCOPE))

    def buckets(self, user_id: str, ip: str) -> list[RateLimit]:
        """The user's and the client IP's counters, keyed as limits' RedisStorage keys them."""
        head, tail = self._user_key
        return [RateLimit(f"{head}{user_id}{tail}", *self._user_limit), self._ip_bucket(ip)]

    def _bucket(self, item: RateLimitItem, key: str, *, scope: str) -> RateLimit:
        return RateLimit(f"{self.key_prefix}:{item.key_for(key, scope)}", item.amount, item.get_expiry(), str(item))


def init_app(app: Flask, settings: Settings, redis: Redis) -> ReservationLimits:
    """Bind the limiter to the app, storing counters in the inventory's Redis (same pool and timeouts)."""
    key_prefix = KeySpace(settings.key_prefix).scoped("rl")
    app.config["FLASHSTOCK_RATE_LIMIT_USER"] = settings.rate_limit_reservations
    app.config["FLASHSTOCK_RATE_LIMIT_IP"] = settings.rate_limit_reservations_per_ip
    # The inventory's own client pool (embedded mode: fakeredis's), so the reserve script and the
    # decorators count in the same Redis; the URI only selects limits' Redis storage.
    if settings.redis_cluster:  # limits' own RedisCluster client on the same nodes (no shared pool there)
        app.config["RATELIMIT_STORAGE_URI"] = settings.redis_url
        app.config["RATELIMIT_STORAGE_OPTIONS"] = {"key_prefix": key_prefix}
    else:
        app.config["RATELIMIT_STORAGE_URI"] = "redis://inventory"
        app.config["RATELIMIT_STORAGE_OPTIONS"] = {"connection_pool": redis.connection_pool,
                                                   "key_prefix": key_prefix}
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
    return ReservationLimits(settings, key_prefix)
