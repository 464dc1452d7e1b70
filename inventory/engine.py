"""The facade adapters use: one object per process wiring the catalogue and reservations."""

from __future__ import annotations

from redis import Redis

from inventory.catalog import Catalog
from inventory.clock import ScriptedClock
from inventory.config import Settings
from inventory.context import Context
from inventory.reservations import Reservations
from inventory.store import connect_redis


class Inventory:
    """flashstock's core: `inventory.catalog` for products, `inventory.reservations` for holds and orders."""

    def __init__(self, redis: Redis, settings: Settings | None = None, clock: ScriptedClock | None = None) -> None:
        self.ctx = Context.create(redis, settings, clock)
        self.settings = self.ctx.settings
        self.catalog = Catalog(self.ctx)
        self.reservations = Reservations(self.ctx)

    @classmethod
    def from_settings(cls, settings: Settings, clock: ScriptedClock | None = None) -> "Inventory":
        """An Inventory connected to the Redis that the settings name."""
        return cls(connect_redis(settings), settings, clock)

    @property
    def redis(self) -> Redis:
        return self.ctx.redis

    @property
    def keys(self):  # noqa: ANN201 - KeySpace
        return self.ctx.keys
