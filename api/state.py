"""What the views share per app: the core, settings, credentials, stores and optional hooks."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

import marshmallow as ma
from flask import Response, current_app, jsonify
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Authenticator
from api.idempotency import IdempotencyStore
from api.ratelimit import ReservationLimits
from api.webhooks import WebhookVerifier
from inventory.config import Settings
from inventory.engine import Inventory
from inventory.models import Order
from inventory.soldout import SoldOutCache, SoldOutListener
from inventory.store import masters, own_connection

CheckoutHook = Callable[[Order], Any]


@dataclass
class ApiState:
    """Attached to the app as `app.extensions["flashstock"]`."""

    settings: Settings
    inventory: Inventory
    auth: Authenticator
    idempotency: IdempotencyStore
    webhooks: WebhookVerifier
    limits: ReservationLimits
    on_checkout: CheckoutHook | None = None
    soldout: SoldOutListener | None = None  # per-process sold-out cache's listener (inventory/soldout.py)
    _engine: Engine | None = field(default=None, repr=False)
    _sessions: sessionmaker[Session] | None = field(default=None, repr=False)

    def engine(self) -> Engine:
        """The database engine, created on first use (only /readyz and admin reconciliation need it)."""
        if self._engine is None:
            from sqlalchemy.engine import make_url

            from inventory.db import make_engine

            url = make_url(self.settings.database_url)
            if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
                url = url.update_query_dict({"connect_timeout": "2"})
            self._engine = make_engine(url.render_as_string(hide_password=False), pool_size=2)
        return self._engine


    def sessions(self) -> sessionmaker[Session]:
        """Database sessions (admin reconciliation), sharing the engine."""
        if self._sessions is None:
            from inventory.db import make_session_factory

            self._sessions = make_session_factory(self.engine())
        return self._sessions


def soldout_listener(inventory: Inventory) -> SoldOutListener | None:
    """The sold-out cache of this app's reserves and its listener (None when SOLDOUT_CACHE_TTL_MS is 0)."""
    ttl = inventory.settings.soldout_cache_ttl_ms
    if ttl <= 0:
        return None
    cache = SoldOutCache(ttl, inventory.buckets.stock_keys)
    inventory.reservations.soldout = cache
    # Scripts' PUBLISH reaches every node of a cluster, so one plain connection to any master will do
    # (chosen without the global `random`, which the listener's thread would otherwise share with the app).
    return SoldOutListener(cache, lambda: own_connection(secrets.choice(masters(inventory.redis))),
                           inventory.keys.stock_pattern)


def state() -> ApiState:
    return current_app.extensions["flashstock"]


def respond(schema: ma.Schema, value: Any, status: int = 200, **extra: Any) -> Response:
    """`{"data": value, ...}` dumped through the documented schema."""
    response = jsonify(schema.dump({"data": value, **extra}))
    response.status_code = status
    return response
