"""Payment deadlines racing late payments across real processes: units back exactly once, Postgres agrees."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

from sqlalchemy import func, select

from inventory import Inventory
from inventory.models import Status
from inventory.persistence import persist_now
from inventory.reconcile import run_reconciliation
from inventory.tables import LedgerRow, OrderRow
from tests.concurrency.workers import pay_at, sweep_for
from tests.helpers import assert_invariant, make_product, outbox_entries, stock

ORDERS = 120


def test_deadline_expiry_racing_late_payments_returns_units_once_and_postgres_agrees(
        real_inv: Inventory, pg_sessions) -> None:  # noqa: ANN001
    make_product(real_inv, "DUE", stock=ORDERS + 30)
    # Real time from here on: Redis's clock decides, in every process (1 s payment window).
    live = Inventory.from_settings(real_inv.settings.with_overrides(payment_ttl_seconds=1))
    url, prefix = real_inv.settings.redis_url, real_inv.keys.prefix
    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("spawn")) as pool:
        for warm in [pool.submit(sweep_for, url, prefix, 0.01) for _ in range(4)]:
            warm.result()  # every worker process started, imported and connected before the clock matters
        orders = [live.reservations.checkout(live.reservations.reserve(f"buyer-{n}", {"DUE": 1}).id)
                  for n in range(ORDERS)]
        created_ms = {o.id: int(o.created_at.timestamp() * 1000) for o in orders}
        rng = random.Random(7)
        plans: list[list[tuple[float, str, str, str]]] = [[], []]
        for n, order in enumerate(orders):
            at = created_ms[order.id] / 1000 + rng.uniform(0.6, 1.4)  # around its deadline (checkout + 1 s)
            result = "failed" if n % 5 == 0 else "paid"
            for plan in plans:  # both payers send the same event: a provider retrying at once
                plan.append((at + rng.uniform(0, 0.05), order.id, f"ev-{n}", result))
        sweepers = [pool.submit(sweep_for, url, prefix, 3.0) for _ in range(2)]
        payers = [pool.submit(pay_at, url, prefix, plan) for plan in plans]
        answers = [row for payer in payers for row in payer.result()]
        for sweeper in sweepers:
            sweeper.result()
    time.sleep(1.1)
    live.reservations.expire_due()

    assert {code for _, code in answers} <= {"paid", "payment_failed", "payment_expired", "refund_required"}, \
        Counter(code for _, code in answers)
    final = {o.id: live.reservations.get_order(o.id).status for o in orders}
    paid = [oid for oid, status in final.items() if status is Status.PAID]
    entries = [f for _, f in outbox_entries(real_inv) if f[b"type"].startswith(b"order")]
    expired_events = Counter(f[b"order"].decode() for f in entries if f[b"type"] == b"order_payment_expired")
    decided_ms = {(f[b"order"].decode(), f[b"type"].decode()): int(f[b"ts"]) for f in entries}
    for oid, status in final.items():
        assert status in (Status.PAID, Status.PAYMENT_FAILED, Status.PAYMENT_EXPIRED, Status.REFUND_REQUIRED)
        went_back = status in (Status.PAYMENT_EXPIRED, Status.REFUND_REQUIRED)
        assert expired_events[oid] == int(went_back), (oid, status)  # exactly once, and only when it expired
        deadline = created_ms[oid] + 1000
        if status is Status.PAID:  # a payment that won the race landed before the deadline on Redis's clock
            assert decided_ms[(oid, "order_paid")] < deadline
        if went_back:
            assert decided_ms[(oid, "order_payment_expired")] >= deadline
    level = stock(real_inv, "DUE")
    assert_invariant(level)
    assert (level.sold, level.held, level.available) == (len(paid), 0, ORDERS + 30 - len(paid))
    print(f"\ndeadline race: {Counter(s.value for s in final.values())}")
    assert 0 < len(paid) < ORDERS * 4 // 5 and expired_events, "the race should land on both sides of the deadline"

    persist_now(real_inv, pg_sessions)
    with pg_sessions() as s:
        stored = dict(s.execute(select(OrderRow.id, OrderRow.status)).all())
        sold = s.execute(select(func.sum(LedgerRow.sold_delta)).where(LedgerRow.sku == "DUE")).scalar()
    assert stored == {oid: status.value for oid, status in final.items()}
    assert int(sold or 0) == len(paid)
    assert run_reconciliation(real_inv, pg_sessions, repair=False, full=True).clean
