"""Reconciliation: compare each SKU's Redis counters with the system of record and repair drift.

Policy
  * total and sold: Postgres is the truth (ledger sums), plus outbox entries Redis still holds that
    are not persisted yet. held: the holds Redis has (Postgres never sees holds). available follows.
  * Redis selling more than Postgres knows means an order's outbox entry was lost: the order is
    re-emitted from its Redis record first, so a sale is never undone by a repair. Only sold units
    that no order anywhere backs are given back.
  * Writes are compare-and-set (WATCH on the SKU's stock hash and holds): a SKU that changes
    meanwhile is re-read, never overwritten with a stale answer.
  * Only SKUs in the dirty set are checked (those changed since the last repairing run), unless full.

Reads never block Redis (inventory/reconcile_reads.py): no call returns more than one slice, the
outbox is read once per run plus its new tail, and a sliced read is never taken for a snapshot:
  * the cheap pass reads each SKU atomically (several small SKUs per bounded MULTI; a SKU with many
    holds in slices under WATCH, kept only if EXEC confirms nothing changed), then the outbox tail,
    then PostgreSQL. It only picks suspects; a torn view there could at most add one.
  * a repair acts only on an observation made inside its own compare-and-set: WATCH stock + holds,
    read the outbox tail, the hash and the holds in slices, query PostgreSQL, then MULTI/EXEC with the
    write. If any slice saw a state the SKU no longer has, the stock hash or holds changed after
    WATCH, EXEC fails and nothing is written. Outbox entries this SKU's counters depend on are in the
    view or already committed to PostgreSQL (module docstring of reconcile_reads says why).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from redis.exceptions import RedisError, WatchError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from inventory.context import decode_hash, text
from inventory.engine import Inventory
from inventory.keys import Partition
from inventory.ledger import Counts, LedgerBusy, Persisted, expected_counts, products, settled
from inventory.models import Line
from inventory.outbox import Event, Movement, OrderEvent, ProductConfigured, order_event_fields
from inventory.persistence import outbox_backlog
from inventory.reconcile_reads import OutboxView, holds_of, lex_members, read_holds, read_skus, scan_set
from inventory.tables import STATUS_RANK, OrderRow, ProductRow, ReconcileDriftRow, ReconcileRunRow

log = logging.getLogger(__name__)

_CHUNK = 200
_ATTEMPTS = 5
# Reconciling while persistence is this far behind only re-reads a huge stream per SKU: wait for the drain.
MAX_BACKLOG = 50_000


@dataclass(frozen=True)
class SkuDrift:
    """One SKU whose Redis counters differed from the truth, and what the run did about it."""

    sku: str
    kind: str  # counters | missing_in_redis | orders_reemitted | unrepairable (busy: internal)
    redis: Counts | None
    expected: Counts
    repaired: bool
    units_repaired: int
    detail: str = ""


@dataclass(frozen=True)
class ReconcileReport:
    """A reconciliation run: SKUs checked, per-SKU drift, what was repaired."""

    run_id: int | None
    full: bool
    repair: bool
    skus_checked: int
    drifts: tuple[SkuDrift, ...]
    orders_recovered: int
    started_ms: int
    finished_ms: int
    skus_busy: int = 0
    skipped: str = ""

    @property
    def skus_drifted(self) -> int:
        return len(self.drifts)

    @property
    def skus_repaired(self) -> int:
        return sum(d.repaired for d in self.drifts)

    @property
    def units_repaired(self) -> int:
        return sum(d.units_repaired for d in self.drifts if d.repaired)

    @property
    def clean(self) -> bool:
        return not self.drifts

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (API responses, CLI --json), with the derived counts."""
        body = asdict(self)
        body.update(skus_drifted=self.skus_drifted, skus_repaired=self.skus_repaired,
                    units_repaired=self.units_repaired, clean=self.clean)
        return body


@dataclass
class Observation:
    """One SKU seen consistently: Redis state (under WATCH) and what the system of record says."""

    fields: dict[str, str]
    holds: list[tuple[str, int, str]]  # (token, qty, user)
    events: list[Event]
    base: Persisted | None
    pending: list[Movement]
    product: ProductRow | None

    @property
    def current(self) -> Counts | None:
        return Counts.of(self.fields)

    @property
    def expected(self) -> Counts:
        return expected_counts(self.base, self.pending, sum(qty for _, qty, _ in self.holds))

    @property
    def known(self) -> bool:
        """Whether Postgres (or the outbox) knows this SKU at all."""
        return self.product is not None or (self.base is not None and self.base.rows > 0) or bool(self.pending)


def run_reconciliation(inv: Inventory, session_factory: sessionmaker[Session], *, repair: bool,
                       full: bool = False) -> ReconcileReport:
    """Check dirty SKUs (all with full=True) against Postgres, record the run, repair if asked."""
    started = inv.ctx.now_ms()
    backlog = outbox_backlog(inv)
    if backlog > MAX_BACKLOG:
        log.warning("reconcile skipped: %d outbox entries not persisted yet", backlog)
        return ReconcileReport(None, full, repair, 0, (), 0, started, started,
                               skipped=f"outbox backlog {backlog} > {MAX_BACKLOG}; persistence is behind")
    checked, drifts, recovered, busy = 0, [], 0, 0
    for part in inv.keys.parts:  # each partition's SKUs with its own outbox and dirty set (one slot)
        part_checked, part_drifts, part_recovered, part_busy = _reconcile_partition(
            inv, session_factory, part, repair=repair, full=full)
        checked, recovered, busy = checked + part_checked, recovered + part_recovered, busy + part_busy
        drifts += part_drifts
    drifts.sort(key=lambda d: d.sku)  # one report in SKU order, however the SKUs spread over partitions
    report = ReconcileReport(None, full, repair, checked, tuple(drifts), recovered, started, inv.ctx.now_ms(), busy)
    run_id = _record(session_factory, report)
    for d in drifts:
        log.warning(
            "reconcile run=%s sku=%s kind=%s redis=%s expected=%s repaired=%s units=%s %s",
            run_id, d.sku, d.kind, d.redis, d.expected, d.repaired, d.units_repaired, d.detail,
        )
    log.info("reconcile run=%s checked=%s drifted=%s repaired=%s units=%s orders_recovered=%s busy=%s",
             run_id, report.skus_checked, report.skus_drifted, report.skus_repaired, report.units_repaired,
             recovered, busy)
    return ReconcileReport(run_id, full, repair, checked, tuple(drifts), recovered, started, report.finished_ms,
                           busy)


def _reconcile_partition(inv: Inventory, session_factory: sessionmaker[Session], part: Partition, *,
                         repair: bool, full: bool) -> tuple[int, list[SkuDrift], int, int]:
    """One partition's share of a run: (SKUs checked, drifts, orders recovered, SKUs busy)."""
    skus = _skus_to_check(inv, session_factory, part, full)
    outbox = OutboxView(inv.redis, part.outbox)
    candidates: list[str] = []
    for start in range(0, len(skus), _CHUNK):
        chunk = skus[start:start + _CHUNK]
        if repair and chunk:
            inv.redis.srem(part.dirty, *chunk)  # a change from now on marks the SKU dirty again
        candidates += _candidates(inv, session_factory, chunk, outbox)
    before = {sku: check_sku(inv, session_factory, sku, repair=False, outbox=outbox)
              for sku in candidates} if repair else {}
    sold_differs = [sku for sku, d in before.items() if d is not None and d.redis is not None
                    and d.redis.sold != d.expected.sold]
    reemitted = recover_orders(inv, session_factory, sold_differs, outbox=outbox) if sold_differs else {}
    recovered = len({order for orders in reemitted.values() for order in orders})
    drifts, busy = [], 0
    for sku in candidates:
        drift = check_sku(inv, session_factory, sku, repair=repair, outbox=outbox)
        if drift is not None and drift.kind == "busy":
            busy += 1
            inv.redis.sadd(part.dirty, sku)  # selling too fast to compare now: next run
            continue
        seen = before.get(sku)
        if drift is None and seen is not None and reemitted.get(sku):
            drift = SkuDrift(sku, "orders_reemitted", seen.redis, seen.expected, True, len(reemitted[sku]),
                             f"{seen.detail}; re-emitted lost order events: {', '.join(sorted(reemitted[sku]))}")
        if drift is None:
            continue
        drifts.append(drift)
        if repair and not drift.repaired:
            inv.redis.sadd(part.dirty, sku)
    return len(skus), drifts, recovered, busy


def _skus_to_check(inv: Inventory, session_factory: sessionmaker[Session], part: Partition,
                   full: bool) -> list[str]:
    if not full:
        return sorted(scan_set(inv.redis, part.dirty))
    with session_factory() as session:
        known = {sku for sku in session.scalars(select(ProductRow.sku)) if inv.keys.partition_of(sku) == part.index}
    return sorted(known | set(lex_members(inv.redis, part.catalog)))


def _candidates(inv: Inventory, session_factory: sessionmaker[Session], skus: Sequence[str],
                outbox: OutboxView) -> list[str]:
    """SKUs that look drifted in one cheap pass (each is then re-checked exactly under WATCH)."""
    if not skus:
        return []
    reads = read_skus(inv.redis, skus, inv.keys.sku)
    outbox.refresh()  # after the reads: their SKUs' events are in the view or committed
    events = [e for sku in skus for e in outbox.for_sku(sku)]
    with session_factory() as session:
        try:
            base, pending = settled(session, list(skus), events)
        except LedgerBusy:
            return list(skus)  # no consistent cheap view: the exact check of each SKU decides
        known = set(products(session, list(skus)))
    out = []
    for sku in skus:
        seen = reads[sku]
        if seen is None:  # changed on every attempt: let the exact check decide (or report it busy)
            out.append(sku)
            continue
        moves = [m for m in pending if m.sku == sku]
        expected = expected_counts(base.get(sku), moves, sum(q for _, q, _ in seen.holds))
        if not seen.fields and sku not in known and sku not in base and not moves:
            continue
        if Counts.of(seen.fields) != expected:
            out.append(sku)
    return out


def observe(pipe: Any, inv: Inventory, session: Session, sku: str, outbox: OutboxView | None = None) -> Observation:
    """Read one SKU under WATCH (pipe watches its stock hash; holds are added here) and what Postgres says."""
    keys = inv.keys.sku(sku)
    pipe.watch(keys.holds)  # read in slices below: only EXEC's WATCH check makes them one snapshot
    outbox = outbox or OutboxView(inv.redis, inv.keys.of_sku(sku).outbox)
    outbox.refresh()  # after WATCH: any later event of this SKU also changes its stock hash
    fields = decode_hash(pipe.hgetall(keys.stock))
    holds = holds_of(fields, []) + read_holds(pipe, keys, inv.redis)
    events = outbox.for_sku(sku)
    base, pending = settled(session, [sku], events)
    return Observation(fields, holds, events, base.get(sku), [m for m in pending if m.sku == sku],
                       products(session, [sku]).get(sku))


def check_sku(inv: Inventory, session_factory: sessionmaker[Session], sku: str, *,
              repair: bool, outbox: OutboxView | None = None) -> SkuDrift | None:
    """Exact check of one SKU; with repair, write the expected counters if nothing changed meanwhile."""
    stock_key = inv.keys.sku(sku).stock
    outbox = outbox or OutboxView(inv.redis, inv.keys.of_sku(sku).outbox)
    for _ in range(_ATTEMPTS):
        with inv.redis.pipeline(transaction=True) as pipe, session_factory() as session:
            try:
                pipe.watch(stock_key, inv.keys.sku(sku).holds)
                seen = observe(pipe, inv, session, sku, outbox)
                drift = _drift(sku, seen)
                pipe.multi()
                if drift is not None and repair and drift.kind != "unrepairable":
                    queue_counts(pipe, inv, sku, seen, seen.expected)
                else:
                    pipe.exists(stock_key)  # EXEC still fails if the SKU changed since WATCH
                pipe.execute()
            except (WatchError, LedgerBusy):
                continue
        if drift is None:
            return None
        repaired = repair and drift.kind != "unrepairable"
        if repaired:
            announce_counts(inv, sku)
        return SkuDrift(drift.sku, drift.kind, drift.redis, drift.expected, repaired,
                        drift.units_repaired if repaired else 0, drift.detail)
    return SkuDrift(sku, "busy", None, Counts(0, 0, 0, 0), False, 0, "kept changing while checked")


def _drift(sku: str, seen: Observation) -> SkuDrift | None:
    current, expected = seen.current, seen.expected
    if current is None:
        if not seen.known:
            return None
        return SkuDrift(sku, "missing_in_redis", None, expected, False, max(expected.available, 0),
                        "stock hash missing in Redis; recreated from Postgres")
    if current == expected:
        return None
    if expected.available < 0:
        return SkuDrift(sku, "unrepairable", current, expected, False, 0,
                        "held + sold exceed the persisted total; adjust the stock")
    parts = [f"{name} {getattr(current, name)}->{getattr(expected, name)}"
             for name in ("total", "available", "held", "sold") if getattr(current, name) != getattr(expected, name)]
    return SkuDrift(sku, "counters", current, expected, False, abs(current.available - expected.available),
                    ", ".join(parts))


def queue_counts(pipe: Any, inv: Inventory, sku: str, seen: Observation, counts: Counts, *,
                 catalog: bool = False, paused: str | None = None) -> None:
    """Queue the writes that set a SKU's counters; catalogue fields come from Postgres if asked or missing."""
    keys = inv.keys.sku(sku)
    values: dict[str, Any] = {"total": counts.total, "avail": counts.available, "held": counts.held,
                              "sold": counts.sold}
    version = max(int(seen.fields.get("ver") or 0), seen.product.version if seen.product else 0,
                  seen.base.version if seen.base else 0)
    values["ver"] = version + 1
    if catalog or not seen.fields:
        values.update(catalog_fields(sku, seen))
        pipe.zadd(inv.keys.of_sku(sku).catalog, {sku: 0})
    if paused is not None:
        values["paused"] = paused
    pipe.hset(keys.stock, mapping=values)


def announce_counts(inv: Inventory, sku: str) -> None:
    """After counters were written: sold-out caches forget the SKU (inventory/soldout.py). Sent on its
    own, after the transaction (a cluster pipeline cannot carry PUBLISH); a lost one costs at most the
    caches' time-to-live."""
    try:
        inv.redis.publish(inv.keys.sku(sku).stock, "1")
    except RedisError as error:
        log.warning("could not announce rewritten counters of %s: %s", sku, error)


def catalog_fields(sku: str, seen: Observation) -> dict[str, Any]:
    """Catalogue data from the newest of: the product row, product events still in the outbox."""
    newest: Any = seen.product
    for event in seen.events:
        if isinstance(event, ProductConfigured) and event.sku == sku and event.paused != "r" and \
                (newest is None or event.version > newest.version):
            newest = event
    if newest is None:
        return {"name": seen.fields.get("name") or sku, "price": seen.fields.get("price") or 0,
                "cur": seen.fields.get("cur") or "USD", "limit": seen.fields.get("limit") or 0,
                "start": seen.fields.get("start") or 0, "end": seen.fields.get("end") or 0,
                "paused": seen.fields.get("paused") or "0"}
    paused = newest.paused if isinstance(newest, ProductConfigured) else ("1" if newest.paused else "0")
    return {"name": newest.name, "price": newest.price, "cur": newest.currency, "limit": newest.per_user_limit,
            "start": newest.starts_at_ms, "end": newest.ends_at_ms, "paused": paused}


def _record(session_factory: sessionmaker[Session], report: ReconcileReport) -> int:
    with session_factory.begin() as session:
        run = ReconcileRunRow(
            started_ms=report.started_ms, finished_ms=report.finished_ms, full=report.full, repair=report.repair,
            skus_checked=report.skus_checked, skus_drifted=report.skus_drifted,
            skus_repaired=report.skus_repaired, orders_recovered=report.orders_recovered,
        )
        for d in report.drifts:
            r = d.redis
            run.drifts.append(ReconcileDriftRow(
                sku=d.sku, kind=d.kind, redis_total=r.total if r else None,
                redis_available=r.available if r else None, redis_held=r.held if r else None,
                redis_sold=r.sold if r else None, expected_total=d.expected.total,
                expected_available=d.expected.available, expected_held=d.expected.held,
                expected_sold=d.expected.sold, repaired=d.repaired, units_repaired=d.units_repaired,
                detail=d.detail,
            ))
        session.add(run)
        session.flush()
        return run.id


# -- orders whose outbox entries were lost ------------------------------------------------------


def recover_orders(inv: Inventory, session_factory: sessionmaker[Session],
                   skus: Sequence[str], *, outbox: OutboxView | None = None) -> dict[str, set[str]]:
    """Re-emit the outbox events of orders Redis has but Postgres (and the outbox) do not reflect.

    Returns the re-emitted order ids by SKU. Scans reservation records, so it only runs for SKUs
    whose counters already disagree.
    """
    if not skus:
        return {}
    part = inv.keys.of_sku(skus[0])
    if any(inv.keys.partition_of(sku) != part.index for sku in skus):
        raise ValueError("recover_orders takes SKUs of one partition")
    wanted = {f"l:{sku}" for sku in skus}
    records: list[tuple[str, dict[str, str]]] = []
    batch: list[Any] = []
    for key in inv.redis.scan_iter(match=part.reservation_match(), count=1000):
        batch.append(key)
        if len(batch) >= 500:
            records += _order_records(inv, batch, wanted)
            batch = []
    records += _order_records(inv, batch, wanted)
    if not records:
        return {}
    outbox = outbox or OutboxView(inv.redis, part.outbox)
    outbox.refresh()
    pending_status: dict[str, str] = {}
    for event in outbox.events:
        if isinstance(event, OrderEvent):
            prior = pending_status.get(event.order_id)
            if prior is None or STATUS_RANK[event.status] > STATUS_RANK[prior]:
                pending_status[event.order_id] = event.status
    order_ids = [rec["oid"] for _, rec in records]
    with session_factory() as session:
        stored = dict(session.execute(select(OrderRow.id, OrderRow.status).where(OrderRow.id.in_(order_ids))).all())
    recovered: dict[str, set[str]] = {}
    for token, rec in records:
        known = max((s for s in (stored.get(rec["oid"]), pending_status.get(rec["oid"])) if s),
                    key=lambda s: STATUS_RANK[s], default=None)
        if known == rec["st"]:
            continue
        pipe = inv.redis.pipeline(transaction=True)
        for fields in _history(token, rec):
            pipe.xadd(part.outbox, fields)
        pipe.execute()
        log.warning("reconcile re-emitted order=%s status=%s (Postgres had %s)", rec["oid"], rec["st"], known)
        for sku in skus:
            if f"l:{sku}" in rec:
                recovered.setdefault(sku, set()).add(rec["oid"])
    return recovered


def _order_records(inv: Inventory, keys: list[Any], wanted: set[str]) -> list[tuple[str, dict[str, str]]]:
    if not keys:
        return []
    pipe = inv.redis.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    out = []
    for key, raw in zip(keys, pipe.execute()):
        rec = decode_hash(raw) if isinstance(raw, dict) else {}
        if rec.get("oid") and rec.get("st") in STATUS_RANK and wanted.intersection(rec):
            token = text(key).rsplit(":r:", 1)[1]
            out.append((token, rec))
    return out


def _history(token: str, rec: dict[str, str]) -> list[dict[str, str]]:
    """The order events a reservation record implies, oldest first (persistence dedupes them)."""
    lines = [Line(f[2:], int(v), int(rec.get(f"p:{f[2:]}", 0))) for f, v in sorted(rec.items()) if f.startswith("l:")]
    results = {f[3:]: v for f, v in rec.items() if f.startswith("ev:")}
    paid = [e for e, r in results.items() if r == "paid"]
    failed = [e for e, r in results.items() if r == "failed"]
    ts = int(rec.get("co") or rec.get("ct") or 0)
    status, sold_once = rec["st"], "co" in rec

    def event(kind: str, event_id: str = "") -> dict[str, str]:
        return order_event_fields(kind, rec["oid"], token, rec["u"], lines, event_id, ts)

    history = [event("order_created")] if sold_once else []
    if status == "paid":
        history.append(event("order_paid", paid[0] if paid else ""))
    if status in ("payment_failed", "refund_required") and sold_once and failed:
        history.append(event("order_payment_failed", failed[0]))
    if status in ("payment_expired", "refund_required") and sold_once and "pexp" in rec:
        history.append(event("order_payment_expired"))
    if status == "refund_required":
        history.append(event("order_refund_required", paid[-1] if paid else ""))
    return history
