"""The facade adapters use: one object per process wiring the catalogue and reservations."""

from __future__ import annotations

from dataclasses import replace

from redis import Redis

from inventory.buckets import Buckets
from inventory.catalog import Catalog
from inventory.clock import ScriptedClock
from inventory.config import Settings
from inventory.context import Context
from inventory.models import SweepResult
from inventory.records import RecordPruner
from inventory.reservations import Reservations
from inventory.store import connect_redis
from inventory.waitlist import Waitlists


class Inventory:
    """flashstock's core: `inventory.catalog` for products, `inventory.reservations` for holds and orders,
    `inventory.waitlists` for buyers waiting on sold-out SKUs."""

    def __init__(self, redis: Redis, settings: Settings | None = None, clock: ScriptedClock | None = None) -> None:
        self.ctx = Context.create(redis, settings, clock)
        self.settings = self.ctx.settings
        self.buckets = Buckets(self.ctx)
        self.catalog = Catalog(self.ctx, self.buckets)
        self.reservations = Reservations(self.ctx, self.buckets)
        self.waitlists = Waitlists(self.ctx, self.reservations)
        self.records = RecordPruner(self.ctx)

    def sweep(self) -> SweepResult:
        """The sweeper's run: expired holds and passed payment deadlines, every waitlist's offers, the
        stock buckets of split SKUs evened out (interrupted moves finished first), then packed records
        past their retention dropped (a slice of the record buckets per run)."""
        result = self.reservations.expire_due()
        offered = self.waitlists.serve_all()
        moved = self.buckets.rebalance_all()
        return replace(result, offered=offered, units_moved=moved, records_pruned=self.records.prune())

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
