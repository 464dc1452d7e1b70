"""The invariants, checked exactly from three witnesses: the client's record, Redis (through the core's
own read functions, never key names) and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from api.errors import STATUS_BY_CODE
from chaos.client import Witness
from chaos.load import CATALOG

SELLING = ("pending_payment", "paid")  # order statuses whose units count as sold
EVENT_OF = {"paid": "paid", "refund_required": "paid", "payment_failed": "failed"}
# A well-formed request must never get these: they would mean the server misread a correct request.
WRONG_FOR_GOOD_REQUEST = {"invalid_signature", "unauthorized", "forbidden", "bad_request", "invalid_request",
                          "internal_error", "event_id_reused"}


@dataclass
class Verdict:
    """One invariant: passed or not, the counts that decide it, and what broke."""

    name: str
    ok: bool
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": self.counts, "problems": self.problems[:20]}


@dataclass
class PgState:
    """What PostgreSQL holds after the run."""

    orders: dict[str, dict[str, Any]]  # id -> {reservation, user, status, lines: {sku: qty}}
    payments: dict[str, tuple[str, str]]  # event id -> (order id, result)
    persisted: dict[str, tuple[int, int]]  # sku -> (total, sold) from the ledger


def read_pg(dsn: str) -> PgState:
    """Orders with their lines, payment events, and the ledger's total and sold per SKU."""
    from inventory.db import make_engine, make_session_factory
    from inventory.sale_status import persisted_counts

    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT o.id, o.reservation_id, o.user_id, o.status, l.sku, l.qty FROM orders o "
                        "LEFT JOIN order_lines l ON l.order_id = o.id")
            orders: dict[str, dict[str, Any]] = {}
            for oid, rid, user, status, sku, qty in cur.fetchall():
                row = orders.setdefault(oid, {"reservation": rid, "user": user, "status": status, "lines": {}})
                if sku is not None:
                    row["lines"][sku] = int(qty)
            cur.execute("SELECT event_id, order_id, result FROM payment_events")
            payments = {e: (o, r) for e, o, r in cur.fetchall()}
    finally:
        conn.close()
    engine = make_engine(_sqlalchemy(dsn), pool_size=1)
    try:
        persisted = persisted_counts(make_session_factory(engine), sorted(CATALOG))
    finally:
        engine.dispose()
    return PgState(orders, payments, persisted)


def _sqlalchemy(dsn: str) -> str:
    parts = dict(p.split("=", 1) for p in dsn.split())
    return f"postgresql+psycopg2://{parts['user']}@{parts['host']}:{parts['port']}/{parts['dbname']}"


def i1_counters(redis_rows: dict[str, Any], pg: PgState, reconcile: dict[str, Any]) -> Verdict:
    """available + held + sold == total, each >= 0; Redis and the PostgreSQL ledger agree; reconcile clean."""
    problems = []
    for sku, row in redis_rows.items():
        if row is None:
            problems.append(f"{sku}: not readable from Redis")
            continue
        if row.available + row.held + row.sold != row.total or min(row.available, row.held, row.sold) < 0:
            problems.append(f"{sku}: avail {row.available} + held {row.held} + sold {row.sold} != total {row.total}")
        if pg.persisted.get(sku, (0, 0)) != (row.total, row.sold):
            problems.append(f"{sku}: Redis total/sold {row.total}/{row.sold} != PostgreSQL {pg.persisted.get(sku)}")
    if not reconcile.get("clean"):
        problems.append(f"reconcile (no repair): {reconcile}")
    return Verdict("I1", not problems, {"skus": len(redis_rows), "units_total": sum(
        r.total for r in redis_rows.values() if r is not None)}, problems)


def i2_no_oversell(redis_rows: dict[str, Any], pg: PgState) -> Verdict:
    """sold <= stock in Redis and PostgreSQL; PostgreSQL's selling orders add up to its sold."""
    problems, units = [], defaultdict(int)
    for order in pg.orders.values():
        if order["status"] in SELLING:
            for sku, qty in order["lines"].items():
                units[sku] += qty
    for sku, (stock, _) in CATALOG.items():
        row = redis_rows.get(sku)
        sold_redis = row.sold if row is not None else -1
        sold_pg = pg.persisted.get(sku, (0, 0))[1]
        if sold_redis > stock or sold_pg > stock or units[sku] > stock:
            problems.append(f"{sku}: stock {stock}, sold Redis {sold_redis} / ledger {sold_pg} / orders {units[sku]}")
        if units[sku] != sold_pg:
            problems.append(f"{sku}: units of selling orders {units[sku]} != ledger sold {sold_pg}")
    return Verdict("I2", not problems, {"units_sold": sum(units.values()),
                                        "stock": sum(s for s, _ in CATALOG.values())}, problems)


def i3_orders(w: Witness, pg: PgState, loss_window: tuple[float, float] | None) -> Verdict:
    """Every 202 checkout has its one order; no order nobody created; every acknowledged payment persisted.

    loss_window: acknowledgements inside it may be lost by the fault itself, as docs/sync.md documents
    (a flushed or rolled-back Redis loses what was not yet persisted); they are counted, not failed."""
    problems: list[str] = []
    lost_documented = 0

    def lost(sent: float, acked: float, what: str) -> None:
        # A request in flight when the fault hit may have run before it: its answer can arrive after.
        nonlocal lost_documented
        if loss_window and acked >= loss_window[0] and sent <= loss_window[1]:
            lost_documented += 1
        else:
            problems.append(what)

    by_reservation = {o["reservation"]: oid for oid, o in pg.orders.items()}
    for rid, (oid, t, t0) in w.checkouts.items():
        if oid not in pg.orders or pg.orders[oid]["reservation"] != rid:
            lost(t0, t, f"checkout {rid} answered 202 as {oid}: no such PostgreSQL order")
        elif by_reservation.get(rid) != oid:
            problems.append(f"reservation {rid}: order {by_reservation.get(rid)} != acknowledged {oid}")
    phantom = [oid for oid, o in pg.orders.items() if o["reservation"] not in w.checkout_tried]
    problems += [f"order {oid} ({pg.orders[oid]['reservation']}) that no client checked out or paid"
                 for oid in phantom]
    acked_final = {oid: s for oid, (_, s, _) in w.order_status.items() if s in EVENT_OF}
    paid_orders = defaultdict(set)
    for event, (oid, result) in pg.payments.items():
        paid_orders[oid].add(result)
    for event, p in w.payments.items():
        if p["status"] in EVENT_OF and p["sent"] == EVENT_OF[p["status"]] and event not in pg.payments \
                and EVENT_OF[p["status"]] not in paid_orders.get(p["order"], set()):
            lost(p["t0"], p["t"], f"payment {event} ({p['sent']}) acknowledged as {p['status']}: not in PostgreSQL")
    for oid, status in acked_final.items():
        t, _, t0 = w.order_status[oid]
        if oid not in pg.orders:
            continue  # counted above as a lost checkout, if one was acknowledged
        if pg.orders[oid]["status"] != status:
            lost(t0, t, f"order {oid}: last acknowledged {status}, PostgreSQL {pg.orders[oid]['status']}")
    keys_twice = [k for k, ids in w.keyed.items() if len(ids) > 1]
    problems += [f"Idempotency-Key {k} answered with {sorted(w.keyed[k])}" for k in keys_twice]
    counts = {"checkouts_202": len(w.checkouts), "pg_orders": len(pg.orders), "phantom_orders": len(phantom),
              "payments_acked": len(w.payments), "pg_payment_events": len(pg.payments),
              "keys": len(w.keyed), "keys_run_twice": len(keys_twice), "lost_in_documented_window": lost_documented}
    return Verdict("I3", not problems, counts, problems)


def i4_limits(pg: PgState) -> Verdict:
    """Nobody holds more ordered units of a limited SKU than its per-user limit."""
    units: dict[tuple[str, str], int] = defaultdict(int)
    for order in pg.orders.values():
        if order["status"] in SELLING:
            for sku, qty in order["lines"].items():
                units[(order["user"], sku)] += qty
    limited = {sku: limit for sku, (_, limit) in CATALOG.items() if limit}
    checked = {k: v for k, v in units.items() if k[1] in limited}
    problems = [f"{user} has {n} x {sku} (limit {limited[sku]})" for (user, sku), n in checked.items()
                if n > limited[sku]]
    at_limit = sum(1 for (user, sku), n in checked.items() if n == limited[sku])
    return Verdict("I4", not problems, {"user_sku_pairs": len(checked), "at_limit": at_limit}, problems)


def i5_answers(w: Witness) -> Verdict:
    """No 500; every error a documented code with its documented status; bad requests refused as documented."""
    problems, refused, no_answer = [], 0, 0
    for a in w.answers:
        if a.status == 0:
            no_answer += 1
            continue
        if a.expect:
            if a.code != a.expect:
                problems.append(f"{a.op}: expected {a.expect}, got {a.status} {a.code}")
            refused += 1
            continue
        if a.ok:
            continue
        documented = a.code in STATUS_BY_CODE and a.code != "internal_error" and STATUS_BY_CODE[a.code] == a.status
        if a.status >= 500 and a.code != "unavailable" or not documented or a.code in WRONG_FOR_GOOD_REQUEST:
            problems.append(f"{a.op} on :{a.port}: {a.status} {a.code}")
    counts = {"answers": len(w.answers) - no_answer, "errors": sum(1 for a in w.answers if a.status >= 400),
              "status_500": sum(1 for a in w.answers if a.status == 500), "no_answer": no_answer,
              "bad_requests_refused": refused}
    return Verdict("I5", not problems, counts, problems)


def i6_recovery(recovery_s: float | None, bound_s: float, crashed: dict[str, int], settled: bool) -> Verdict:
    """Healthy again without a person within bound_s; no process died by itself; everything drained."""
    problems = [f"{name} exited by itself with {code}" for name, code in crashed.items()]
    if recovery_s is None or recovery_s > bound_s:
        problems.append(f"not recovered within {bound_s:.0f} s")
    if not settled:
        problems.append("holds, outbox or ledger never settled")
    return Verdict("I6", not problems, {"recovery_ms": -1 if recovery_s is None else round(recovery_s * 1000),
                                        "bound_s": int(bound_s), "crashed": len(crashed)}, problems)
