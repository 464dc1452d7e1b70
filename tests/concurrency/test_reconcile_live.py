"""Reconcile with repair and slices far smaller than the data, while processes trade and a drain runs."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest
from sqlalchemy import select

from inventory import Inventory, reconcile_reads
from inventory.errors import ReservationClosed
from inventory.persistence import drain_once, persist_now
from inventory.reconcile import run_reconciliation
from inventory.tables import ReconcileDriftRow
from tests.concurrency.workers import trade
from tests.helpers import assert_invariant, make_product, stock

TRADED = ["HOT", "WARM", "TEE"]


@pytest.fixture
def tiny_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("OUTBOX_SLICE", 7), ("HOLDS_SLICE", 5), ("BATCH_HOLDS", 6), ("BATCH_SKUS", 2),
                        ("SET_SLICE", 2)):
        monkeypatch.setattr(reconcile_reads, name, value)


def test_reconcile_during_trading_repairs_only_real_drift_and_redis_ends_agreeing_with_postgres(
        real_inv: Inventory, pg_sessions, tiny_slices: None) -> None:
    for sku in TRADED:
        make_product(real_inv, sku, stock=2000)
    make_product(real_inv, "DRIFT", stock=30)
    persist_now(real_inv, pg_sessions)
    assert run_reconciliation(real_inv, pg_sessions, repair=True, full=True).clean
    real_inv.redis.hincrby(real_inv.keys.sku("DRIFT").stock, "avail", 3)  # the only real drift
    real_inv.redis.sadd(real_inv.keys.of_sku("DRIFT").dirty, "DRIFT")
    stop = threading.Event()

    def drainer() -> None:
        while not stop.is_set():
            drain_once(real_inv, pg_sessions, batch_size=5, claim_idle_ms=0)

    sweeper = Inventory(real_inv.redis, real_inv.settings)  # the traders' clock (real_inv's is manual)

    def sweep() -> None:
        try:
            sweeper.reservations.expire_due()
        except ReservationClosed:
            pass  # a hold checked out between the sweep's ZRANGEBYSCORE and its release call

    drain = threading.Thread(target=drainer)
    drain.start()
    reports = []
    try:
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
            traders = [pool.submit(trade, real_inv.settings.redis_url, real_inv.settings.key_prefix, TRADED, seed, 500)
                       for seed in range(2)]
            while not all(t.done() for t in traders):
                reports.append(run_reconciliation(real_inv, pg_sessions, repair=True, full=len(reports) % 2 == 1))
                sweep()
            done = [t.result() for t in traders]
    finally:
        stop.set()
        drain.join()

    assert sum(d["checked_out"] for d in done) > 0 and sum(d["released"] for d in done) > 0
    assert len(reports) >= 2, len(reports)
    repaired = [(d.sku, d.kind) for r in reports for d in r.drifts]
    assert repaired == [("DRIFT", "counters")], [d for r in reports for d in r.drifts]
    with pg_sessions() as s:
        assert [(row.sku, row.repaired) for row in s.scalars(select(ReconcileDriftRow))] == [("DRIFT", True)]
    persist_now(real_inv, pg_sessions)
    for sku in TRADED + ["DRIFT"]:
        assert_invariant(stock(real_inv, sku))
    assert stock(real_inv, "DRIFT").available == 30
    assert run_reconciliation(real_inv, pg_sessions, repair=False, full=True).clean  # Redis == Postgres
