"""What an operator watches during a sale: per-SKU status and holds, persistence lag, memory, reconcile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from redis.exceptions import ResponseError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from inventory.buckets import product_of
from inventory.context import text
from inventory.engine import Inventory
from inventory.holds import first_expiry, light_holds
from inventory.sale_admin import global_paused
from inventory.sale_status import SkuStatus, persisted_counts, read_status
from inventory.store import masters
from inventory.tables import OrderLineRow, OrderRow, ReconcileDriftRow, ReconcileRunRow

MAX_DRIFT_LINES = 10


@dataclass(frozen=True)
class SkuLive:
    """One SKU's Redis-side figures plus the expiry of its soonest open hold (None: no open holds)."""

    status: SkuStatus
    soonest_expiry_ms: int | None


@dataclass(frozen=True)
class OutboxLag:
    """Events not yet persisted (or not yet acknowledged) and the age of the oldest, by Redis's clock."""

    depth: int
    oldest_age_ms: int | None


@dataclass(frozen=True)
class RedisMemory:
    """INFO memory figures in bytes (max 0: no maxmemory limit)."""

    used: int
    peak: int
    max: int


@dataclass(frozen=True)
class LiveOps:
    """Everything read from Redis for one refresh, at Redis's `now_ms`."""

    now_ms: int
    paused_globally: bool
    skus: list[SkuLive]
    outbox: OutboxLag
    memory: RedisMemory


@dataclass(frozen=True)
class DriftLine:
    """One SKU's drift found by a reconcile run."""

    sku: str
    kind: str
    repaired: bool
    units_repaired: int


@dataclass(frozen=True)
class ReconcileSummary:
    """The latest reconciliation run and the drift it found."""

    run_id: int
    started_ms: int
    finished_ms: int
    full: bool
    repair: bool
    skus_checked: int
    skus_drifted: int
    skus_repaired: int
    drifts: list[DriftLine]


@dataclass(frozen=True)
class PersistedOps:
    """The database's side: units paid, persisted total/sold per SKU, the last reconcile."""

    paid: dict[str, int]
    totals: dict[str, tuple[int, int]]
    last_reconcile: ReconcileSummary | None


def read_live(inv: Inventory, skus: Sequence[str]) -> LiveOps:
    """Per-SKU status and soonest hold expiry, outbox lag, Redis memory and the global pause (Redis only)."""
    statuses = read_status(inv, skus)
    pipe = inv.redis.pipeline(transaction=False)
    for status in statuses:
        pipe.zrange(inv.keys.sku(status.sku).holds, 0, 0, withscores=True)
        pipe.hgetall(inv.keys.sku(status.sku).stock)  # a light SKU's holds (inventory/holds.py)
    _read_outboxes(inv, pipe)
    replies = pipe.execute()
    now = inv.ctx.now_ms()
    live = [SkuLive(status, _soonest(replies[2 * i], replies[2 * i + 1])) for i, status in enumerate(statuses)]
    return LiveOps(now_ms=now, paused_globally=global_paused(inv), skus=live,
                   outbox=_outbox_lag(replies[2 * len(statuses):], now), memory=_memory(inv))


def _soonest(first: list[Any], stock: dict[Any, Any]) -> int | None:
    """The soonest expiry of a SKU's holds; a hold pinned by a multi-part checkout (inf) has none yet."""
    light = light_holds(stock)
    expiry = first_expiry(first, light[0][3] if light else None)
    return int(expiry) if expiry is not None else None


def outbox_lag(inv: Inventory) -> OutboxLag:
    """Events waiting in every partition's outbox and the age of the oldest (one pipelined read)."""
    pipe = inv.redis.pipeline(transaction=False)
    _read_outboxes(inv, pipe)
    return _outbox_lag(pipe.execute(), inv.ctx.now_ms())


def _read_outboxes(inv: Inventory, pipe: Any) -> None:
    for part in inv.keys.parts:
        pipe.xlen(part.outbox)
        pipe.xrange(part.outbox, "-", "+", count=1)


def _outbox_lag(replies: list[Any], now_ms: int) -> OutboxLag:
    """OutboxLag from _read_outboxes' replies (an entry id starts with its Redis time in ms)."""
    depth = sum(int(n) for n in replies[::2])
    firsts = [int(text(first[0][0]).split("-", 1)[0]) for first in replies[1::2] if first]
    oldest = min(firsts) if firsts else None
    return OutboxLag(depth, None if oldest is None else max(0, now_ms - oldest))


def read_persisted(session_factory: sessionmaker[Session], skus: Sequence[str],
                   buckets: Mapping[str, list[str]] | None = None) -> PersistedOps:
    """Units paid and ledger total/sold per SKU, and the latest reconcile run, from the database;
    `buckets` names the stock buckets of split SKUs (Layout.buckets), summed into their product's."""
    names = sorted(set(skus) | {name for found in (buckets or {}).values() for name in found})
    totals = persisted_counts(session_factory, list(skus), buckets)
    with session_factory() as session:
        return PersistedOps(paid=_paid(session, list(skus), names), totals=totals,
                            last_reconcile=_last_reconcile(session))


def _paid(session: Session, skus: list[str], names: list[str]) -> dict[str, int]:
    """Units paid per product, over the lines of each of its bucket `names` (quota lines are not units)."""
    paid = dict.fromkeys(skus, 0)
    for start in range(0, len(names), 500):
        rows = session.execute(
            select(OrderLineRow.sku, func.sum(OrderLineRow.qty))
            .join(OrderRow, OrderRow.id == OrderLineRow.order_id)
            .where(OrderRow.status == "paid", OrderLineRow.sku.in_(names[start:start + 500]))
            .group_by(OrderLineRow.sku))
        for sku, qty in rows:
            paid[product_of(sku)] = paid.get(product_of(sku), 0) + int(qty or 0)
    return paid


def _last_reconcile(session: Session) -> ReconcileSummary | None:
    run = session.scalars(select(ReconcileRunRow).order_by(ReconcileRunRow.id.desc()).limit(1)).first()
    if run is None:
        return None
    drifts = session.scalars(select(ReconcileDriftRow).where(ReconcileDriftRow.run_id == run.id)
                             .order_by(ReconcileDriftRow.sku).limit(MAX_DRIFT_LINES)).all()
    return ReconcileSummary(
        run_id=run.id, started_ms=run.started_ms, finished_ms=run.finished_ms, full=run.full, repair=run.repair,
        skus_checked=run.skus_checked, skus_drifted=run.skus_drifted, skus_repaired=run.skus_repaired,
        drifts=[DriftLine(d.sku, d.kind, d.repaired, d.units_repaired) for d in drifts])


def _memory(inv: Inventory) -> RedisMemory:
    """INFO memory; zeros where the server has no INFO (the embedded fakeredis)."""
    try:  # every master of a cluster, summed
        infos: list[dict[str, Any]] = [node.info("memory") for node in masters(inv.redis)]
    except ResponseError:
        return RedisMemory(0, 0, 0)
    return RedisMemory(*(sum(int(info.get(name, 0)) for info in infos)
                         for name in ("used_memory", "used_memory_peak", "maxmemory")))
