"""Drain the Redis outbox into the SQL system of record: at-least-once delivery, idempotent effects.

A consumer group hands entries out; each batch is written in one SQL transaction with
`INSERT ... ON CONFLICT DO NOTHING` keyed by natural ids (order id, event id, ledger ref), and the
entries are acknowledged and deleted from the stream only after that transaction commits. A process
killed anywhere in between leaves the entries pending; they are re-read (by the same consumer) or
claimed (by another one once idle) and re-applied, which changes nothing the second time.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from redis import Redis
from redis.exceptions import ResponseError
from sqlalchemy import and_, bindparam, case, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from inventory.buckets import is_quota
from inventory.context import text
from inventory.engine import Inventory
from inventory.keys import Partition
from inventory.outbox import (
    Event,
    Malformed,
    OrderEvent,
    ProductConfigured,
    SaleSwitched,
    StockAdjusted,
    StreamId,
    movements,
    parse_entries,
)
from inventory.tables import (
    STATUS_RANK,
    LedgerRow,
    OrderLineRow,
    OrderRow,
    OutboxRejectRow,
    PaymentEventRow,
    ProductRow,
    SaleSwitchRow,
    SyncStateRow,
)

log = logging.getLogger(__name__)

GROUP = "persist"
_CHUNK = 500


@dataclass(frozen=True)
class DrainResult:
    """What one drain did: entries persisted and acknowledged, by kind, and what is left."""

    entries: int = 0
    order_events: int = 0
    stock_events: int = 0
    product_events: int = 0
    rejects: int = 0
    batches: int = 0
    backlog: int = 0

    def __add__(self, other: "DrainResult") -> "DrainResult":
        return DrainResult(
            self.entries + other.entries, self.order_events + other.order_events,
            self.stock_events + other.stock_events, self.product_events + other.product_events,
            self.rejects + other.rejects, self.batches + other.batches, other.backlog,
        )


def consumer_name() -> str:
    """This process's consumer name in the group (host and pid, so a restart is a new consumer)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def ensure_group(redis: Redis, stream: str) -> None:
    """Create the consumer group (and the stream) if missing; from id 0 so nothing already there is skipped."""
    try:
        redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def drain_once(
    inv: Inventory,
    session_factory: sessionmaker[Session],
    *,
    batch_size: int | None = None,
    max_batches: int = 20,
    consumer: str | None = None,
    claim_idle_ms: int | None = None,
) -> DrainResult:
    """Persist outbox entries in batches until the stream has nothing for us or max_batches ran."""
    size = batch_size or inv.settings.persist_batch_size
    idle = int(inv.settings.persist_claim_idle_seconds * 1000) if claim_idle_ms is None else claim_idle_ms
    name = consumer or consumer_name()
    result = DrainResult()
    for part in inv.keys.parts:  # one outbox per partition, each acknowledged after its own commit
        for _ in range(max_batches):
            entries = _read_batch(inv, part, name, size, idle)
            if not entries:
                break
            result = result + _persist_batch(inv, part, session_factory, entries)
    if result.batches == 0:
        prune_consumers(inv)
    return DrainResult(**{**result.__dict__, "backlog": outbox_backlog(inv)})


def persist_now(inv: Inventory, session_factory: sessionmaker[Session], *, max_batches: int = 10_000) -> DrainResult:
    """Persist everything in the outbox now, including entries another consumer holds (admin 'persist now')."""
    return drain_once(inv, session_factory, max_batches=max_batches, claim_idle_ms=0)


def prune_consumers(inv: Inventory, idle_ms: int = 3_600_000) -> int:
    """Forget consumers (dead processes) that hold nothing and were idle for an hour."""
    gone = 0
    for part in inv.keys.parts:
        try:
            consumers = inv.redis.xinfo_consumers(part.outbox, GROUP)
        except ResponseError:
            continue
        for consumer in consumers:
            if int(consumer["pending"]) == 0 and int(consumer["idle"]) > idle_ms:
                inv.redis.xgroup_delconsumer(part.outbox, GROUP, consumer["name"])
                gone += 1
    return gone


def outbox_backlog(inv: Inventory) -> int:
    """Entries still in the streams: not yet persisted, or persisted but not yet acknowledged."""
    pipe = inv.redis.pipeline(transaction=False)
    for part in inv.keys.parts:
        pipe.xlen(part.outbox)
    return sum(int(n) for n in pipe.execute())


def _read_batch(inv: Inventory, part: Partition, consumer: str, size: int,
                idle_ms: int) -> list[tuple[Any, dict[Any, Any]]]:
    """Own unacknowledged entries first, then entries idle too long at other consumers, then new ones."""
    try:
        return _read(inv.redis, part.outbox, consumer, size, idle_ms)
    except ResponseError as error:
        # redis-server says NOGROUP; fakeredis says the key must exist (same cause: no stream/group yet).
        if "NOGROUP" not in str(error) and "requires the key to exist" not in str(error):
            raise
        ensure_group(inv.redis, part.outbox)  # first run, or Redis lost the stream
        return _read(inv.redis, part.outbox, consumer, size, idle_ms)


def _read(redis: Redis, stream: str, consumer: str, size: int, idle_ms: int) -> list[tuple[Any, dict[Any, Any]]]:
    for source in ("0", "claim", ">"):
        if source == "claim":
            reply = redis.xautoclaim(stream, GROUP, consumer, min_idle_time=idle_ms, start_id="0-0", count=size)
            entries = reply[1]
        else:
            answer = redis.xreadgroup(GROUP, consumer, {stream: source}, count=size)
            entries = answer[0][1] if answer else []
        gone = [eid for eid, fields in entries if not fields]
        if gone:  # deleted from the stream after commit, but the ack was lost: just acknowledge
            redis.xack(stream, GROUP, *gone)
        entries = [(eid, fields) for eid, fields in entries if fields]
        if entries:
            return entries
    return []


def _persist_batch(inv: Inventory, part: Partition, session_factory: sessionmaker[Session],
                   entries: list[tuple[Any, dict[Any, Any]]]) -> DrainResult:
    events = parse_entries(entries)
    epoch = inv.redis.get(part.epoch)
    with session_factory.begin() as session:
        apply_events(session, events, now_ms=inv.ctx.now_ms())
        if epoch is not None:
            record_progress(session, part.index, text(epoch), max(StreamId.parse(eid) for eid, _ in entries),
                            inv.ctx.now_ms())
    ids = [eid for eid, _ in entries]
    pipe = inv.redis.pipeline(transaction=True)  # one slot: a cluster runs it as one MULTI too
    pipe.xack(part.outbox, GROUP, *ids)
    pipe.xdel(part.outbox, *ids)
    pipe.execute()
    rejects = [e for e in events if isinstance(e, Malformed)]
    for reject in rejects:
        log.error("outbox entry rejected", extra={"entry_id": reject.entry_id, "error": reject.error})
    _log_persisted(events)
    return DrainResult(
        entries=len(entries),
        order_events=sum(isinstance(e, OrderEvent) for e in events),
        stock_events=sum(isinstance(e, StockAdjusted) for e in events),
        product_events=sum(isinstance(e, ProductConfigured) for e in events),
        rejects=len(rejects),
        batches=1,
    )


def _log_persisted(events: Sequence[Event]) -> None:
    """One line per order event now in the database, with the request id that wrote its outbox entry."""
    # One line per order is the same volume as the API's request lines, and lets one id find the write.
    if not log.isEnabledFor(logging.INFO):
        return
    for event in events:
        if isinstance(event, OrderEvent):
            log.info("order event persisted", extra={
                "entry_id": event.entry_id, "kind": event.kind, "order_id": event.order_id,
                "status": event.status, "request_id": event.request_id or None})


# -- SQL ------------------------------------------------------------------------------------------


def _insert(session: Session, table: Any) -> Any:
    """The dialect's INSERT (PostgreSQL or SQLite), which has on_conflict_do_nothing/do_update."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database dialect {dialect!r}")


def _chunks(rows: Sequence[dict[str, Any]]) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start:start + _CHUNK]


def _insert_ignore(session: Session, table: Any, rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
    """Idempotent multi-row insert, rows sorted by key so concurrent drains lock in the same order."""
    if not rows:
        return
    rows = sorted(rows, key=lambda row: tuple(row[k] for k in keys))
    # executemany of one cached statement; RETURNING lets SQLAlchemy batch an upsert into multi-row
    # VALUES ("insertmanyvalues") instead of one round trip per row.
    stmt = _insert(session, table).on_conflict_do_nothing(index_elements=keys).returning(table.c[keys[0]])
    session.execute(stmt, rows).all()


def apply_events(session: Session, events: Sequence[Event], *, now_ms: int) -> None:
    """Write the effects of events; applying the same events again (in any order) changes nothing."""
    _apply_products(session, [e for e in events if isinstance(e, ProductConfigured)], now_ms)
    _apply_sale_switch(session, [e for e in events if isinstance(e, SaleSwitched)], now_ms)
    orders = [e for e in events if isinstance(e, OrderEvent)]
    _apply_orders(session, orders, now_ms)
    ledger = [m for e in events for m in movements(e)]
    _insert_ignore(session, LedgerRow.__table__, [
        dict(ref=m.ref, sku=m.sku, kind=m.kind, total_delta=m.total_delta, sold_delta=m.sold_delta,
             order_id=m.order_id, version=m.version, created_ms=m.ts_ms) for m in {m.ref: m for m in ledger}.values()
    ], ["ref"])
    rejects = {e.entry_id: e for e in events if isinstance(e, Malformed)}
    _insert_ignore(session, OutboxRejectRow.__table__, [
        dict(entry_id=e.entry_id, fields=json.dumps(e.fields, sort_keys=True), error=e.error, received_ms=now_ms)
        for e in rejects.values()
    ], ["entry_id"])


def _apply_sale_switch(session: Session, events: list[SaleSwitched], now_ms: int) -> None:
    """The newest switch entry wins (stream ids order them), whatever order batches arrive in."""
    if not events:
        return
    newest = max(events, key=lambda e: StreamId.parse(e.entry_id))
    entry = StreamId.parse(newest.entry_id)
    row = session.get(SaleSwitchRow, 1, with_for_update=True)
    if row is None:
        session.add(SaleSwitchRow(id=1, paused=newest.paused, entry_ms=entry.ms, entry_seq=entry.seq,
                                  updated_ms=now_ms))
    elif (row.entry_ms, row.entry_seq) < (entry.ms, entry.seq):
        row.paused, row.entry_ms, row.entry_seq, row.updated_ms = newest.paused, entry.ms, entry.seq, now_ms


def persisted_sale_switch(session: Session) -> bool:
    """Whether PostgreSQL last saw every sale paused (restored into Redis by a rebuild)."""
    row = session.get(SaleSwitchRow, 1)
    return bool(row and row.paused)


def _apply_products(session: Session, events: list[ProductConfigured], now_ms: int) -> None:
    """Newest version per SKU wins, written as multi-row upserts (imports send 100k of these)."""
    newest: dict[str, ProductConfigured] = {}
    paused: dict[str, bool] = {}
    for event in sorted(events, key=lambda e: e.version):
        newest[event.sku] = event
        # 'r' (recovering) is a transient Redis state, never the product's configured setting.
        if event.paused != "r":
            paused[event.sku] = event.paused == "1"
    rows = [dict(sku=e.sku, name=e.name, price=e.price, currency=e.currency, per_user_limit=e.per_user_limit,
                 starts_at_ms=e.starts_at_ms, ends_at_ms=e.ends_at_ms, paused=paused.get(e.sku, False),
                 version=e.version, updated_ms=now_ms, buckets=e.buckets or 0) for e in newest.values()]
    # An entry written before events carried 'bk' leaves the stored bucket count as it is.
    reported = {e.sku for e in newest.values() if e.buckets is not None}
    for with_paused in (True, False):
        for with_buckets in (True, False):
            group = [row for row in rows
                     if (row["sku"] in paused) is with_paused and (row["sku"] in reported) is with_buckets]
            for start in range(0, len(group), 500):
                _upsert_products(session, group[start:start + 500], kept={
                    *(() if with_paused else ("paused",)), *(() if with_buckets else ("buckets",))})


def _upsert_products(session: Session, rows: list[dict], *, kept: set[str]) -> None:
    """Insert or update rows; an existing row keeps its `kept` columns (a new row takes the defaults)."""
    if not rows:
        return
    table = ProductRow.__table__
    stmt = _insert(session, table).values(rows)
    updated = [k for k in rows[0] if k != "sku" and k not in kept]
    session.execute(stmt.on_conflict_do_update(
        index_elements=["sku"],
        set_={k: stmt.excluded[k] for k in updated},
        where=table.c.version < stmt.excluded.version,
    ))


def _apply_orders(session: Session, events: list[OrderEvent], now_ms: int) -> None:
    if not events:
        return
    by_order: dict[str, list[OrderEvent]] = {}
    for event in events:
        by_order.setdefault(event.order_id, []).append(event)
    orders, lines, payments, updates = [], [], [], []
    for order_id, group in by_order.items():
        first = min(group, key=lambda e: e.ts_ms)
        best = max(group, key=lambda e: STATUS_RANK[e.status])
        # The id of the call that created the order (its first event; checkout or an early payment).
        creator = min(group, key=lambda e: (e.ts_ms, STATUS_RANK[e.status]))
        # An order whose lines live in several partitions arrives as one event per part, each with its
        # own lines: the order's lines are their union (and its total their sum, fixed up below).
        order_lines = {line.sku: line for event in group for line in event.lines}
        orders.append(dict(id=order_id, reservation_id=first.reservation_id, user_id=first.user_id,
                           status=best.status, total=sum(l.qty * l.unit_price for l in order_lines.values()),
                           created_ms=first.ts_ms, updated_ms=now_ms, request_id=creator.request_id or None))
        lines += [dict(order_id=order_id, sku=line.sku, qty=line.qty, unit_price=line.unit_price)
                  for line in order_lines.values() if not is_quota(line.sku)]  # a quota line holds no stock
        payments += [dict(event_id=e.event_id, order_id=order_id,
                          result="failed" if e.kind == "order_payment_failed" else "paid", received_ms=e.ts_ms,
                          request_id=e.request_id or None)
                     for e in group if e.event_id]
        updates.append(dict(b_id=order_id, b_status=best.status, b_rank=STATUS_RANK[best.status],
                            b_ts=first.ts_ms, b_now=now_ms))
    _insert_ignore(session, OrderRow.__table__, orders, ["id"])
    _insert_ignore(session, OrderLineRow.__table__, lines, ["order_id", "sku"])
    # The parts of a multi-partition order come from different partitions' outboxes, so in different
    # batches: the first one inserts the order, each later one adds its lines and fixes the total.
    _fix_totals(session, sorted(by_order))
    _insert_ignore(session, PaymentEventRow.__table__, list({p["event_id"]: p for p in payments}.values()),
                   ["event_id"])
    # A new order already has its status; only later statuses (or rows that existed) need moving forward.
    _advance_status(session, sorted((u for u in updates if u["b_rank"] > 0), key=lambda u: u["b_id"]))


def _fix_totals(session: Session, order_ids: list[str]) -> None:
    """Set each order's total to the sum of its stored lines (parts persisted in different batches)."""
    if not order_ids:
        return
    orders, lines = OrderRow.__table__, OrderLineRow.__table__
    summed = (select(func.coalesce(func.sum(lines.c.qty * lines.c.unit_price), 0))
              .where(lines.c.order_id == orders.c.id).scalar_subquery())
    for start in range(0, len(order_ids), 500):
        session.execute(orders.update().where(orders.c.id.in_(order_ids[start:start + 500]), orders.c.total != summed)
                        .values(total=summed))


def _advance_status(session: Session, updates: list[dict[str, Any]]) -> None:
    """Move each order's status forward only (a stale redelivery never moves it back)."""
    table = OrderRow.__table__
    rank = case({status: r for status, r in STATUS_RANK.items()}, value=table.c.status, else_=-1)
    stmt = (
        table.update()
        .where(table.c.id == bindparam("b_id"))
        .values(
            status=case((rank < bindparam("b_rank"), bindparam("b_status")), else_=table.c.status),
            created_ms=case((table.c.created_ms > bindparam("b_ts"), bindparam("b_ts")), else_=table.c.created_ms),
            updated_ms=bindparam("b_now"),
        )
    )
    for chunk in _chunks(updates):
        session.execute(stmt, list(chunk))


def sync_state_id(partition: int) -> int:
    """The sync_state row of a partition (row 1 is partition 0, as before partitions existed)."""
    return partition + 1


def record_progress(session: Session, partition: int, epoch: str, last: StreamId, now_ms: int) -> None:
    """Remember the highest outbox id persisted from a partition under its epoch (rollback detection reads it)."""
    table = SyncStateRow.__table__
    session.execute(
        table.update()
        .where(table.c.id == sync_state_id(partition), table.c.epoch == epoch,
               or_(table.c.last_ms < last.ms, and_(table.c.last_ms == last.ms, table.c.last_seq < last.seq)))
        .values(last_ms=last.ms, last_seq=last.seq, updated_ms=now_ms)
    )
