"""Reconciliation finds drift between Redis and Postgres, records it per SKU and repairs it (real servers)."""

from __future__ import annotations

import threading

from sqlalchemy import select

from inventory import Inventory
from inventory.errors import InventoryError
from inventory.holds import read_open_holds
from inventory.persistence import drain_once, persist_now
from inventory.reconcile import run_reconciliation
from inventory.tables import OrderRow, ReconcileDriftRow, ReconcileRunRow
from tests.helpers import assert_invariant, make_product, outbox_length, stock


def _sell(inv: Inventory, n: int, sku: str = "HOT", start: int = 0) -> list[str]:
    return [inv.reservations.checkout(inv.reservations.reserve(f"b{i}", {sku: 1}).id).id
            for i in range(start, start + n)]


def _settled(inv: Inventory, sessions) -> None:
    persist_now(inv, sessions)
    assert run_reconciliation(inv, sessions, repair=True).clean  # clears the dirty set


def test_a_counter_changed_behind_its_back_is_reported_then_repaired_and_the_next_run_is_clean(
        real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=20)
    _sell(real_inv, 5)
    _settled(real_inv, pg_sessions)
    real_inv.redis.hincrby(real_inv.keys.sku("HOT").stock, "avail", 7)
    real_inv.redis.sadd(real_inv.keys.of_sku("HOT").dirty, "HOT")

    report_only = run_reconciliation(real_inv, pg_sessions, repair=False)
    assert [(d.sku, d.kind, d.repaired) for d in report_only.drifts] == [("HOT", "counters", False)]
    assert report_only.drifts[0].expected.available == 15 and stock(real_inv).available == 22

    repaired = run_reconciliation(real_inv, pg_sessions, repair=True)
    assert repaired.skus_repaired == 1 and repaired.units_repaired == 7
    assert (stock(real_inv).available, stock(real_inv).sold) == (15, 5)
    assert_invariant(stock(real_inv))
    assert run_reconciliation(real_inv, pg_sessions, repair=True, full=True).clean
    with pg_sessions() as s:
        runs = list(s.scalars(select(ReconcileRunRow).order_by(ReconcileRunRow.id)))
        drift_rows = list(s.scalars(select(ReconcileDriftRow).where(ReconcileDriftRow.run_id == repaired.run_id)))
    assert [r.skus_drifted for r in runs] == [0, 1, 1, 0]
    assert [(d.sku, d.redis_available, d.expected_available, d.repaired) for d in drift_rows] == \
        [("HOT", 22, 15, True)]


def test_an_order_whose_outbox_entry_was_lost_is_re_emitted_and_never_made_available(
        real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=10)
    _sell(real_inv, 3)
    _settled(real_inv, pg_sessions)
    lost = _sell(real_inv, 1, start=3)[0]
    real_inv.reservations.record_payment(event_id="paid-lost", result="paid", order_id=lost)
    for entry_id, _ in real_inv.redis.xrange(real_inv.keys.of_sku("HOT").outbox):
        real_inv.redis.xdel(real_inv.keys.of_sku("HOT").outbox, entry_id)  # the checkout's and payment's entries vanish

    report = run_reconciliation(real_inv, pg_sessions, repair=True)

    assert report.orders_recovered == 1
    assert [(d.sku, d.kind, d.repaired) for d in report.drifts] == [("HOT", "orders_reemitted", True)]
    assert (stock(real_inv).sold, stock(real_inv).available) == (4, 6)  # the sale stands
    drain_once(real_inv, pg_sessions)
    with pg_sessions() as s:
        assert s.get(OrderRow, lost).status == "paid"
    assert run_reconciliation(real_inv, pg_sessions, repair=True, full=True).clean


def test_a_sku_missing_in_redis_is_recreated_from_postgres(real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=8, price=4200, limit=2)
    make_product(real_inv, "TEE", stock=5)
    _sell(real_inv, 2)
    _settled(real_inv, pg_sessions)
    keys = real_inv.keys.sku("HOT")
    real_inv.redis.delete(keys.stock, keys.holds, keys.buyers)
    real_inv.redis.zrem(real_inv.keys.of_sku("HOT").catalog, "HOT")

    report = run_reconciliation(real_inv, pg_sessions, repair=True, full=True)

    assert [(d.sku, d.kind, d.repaired) for d in report.drifts] == [("HOT", "missing_in_redis", True)]
    product = real_inv.catalog.get("HOT")
    assert (product.price, product.per_user_limit, product.stock.total, product.stock.sold,
            product.stock.available) == (4200, 2, 8, 2, 6)
    assert "HOT" in real_inv.catalog.all_skus()
    assert run_reconciliation(real_inv, pg_sessions, repair=True, full=True).clean


def test_redis_forgetting_sales_is_repaired_toward_postgres_so_sold_stock_stays_unavailable(
        real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=10)
    _sell(real_inv, 4)
    _settled(real_inv, pg_sessions)
    key = real_inv.keys.sku("HOT").stock
    real_inv.redis.hset(key, mapping={"sold": 1, "avail": 9})  # as if an old snapshot came back
    real_inv.redis.sadd(real_inv.keys.of_sku("HOT").dirty, "HOT")

    report = run_reconciliation(real_inv, pg_sessions, repair=True)

    assert report.skus_repaired == 1 and report.drifts[0].units_repaired == 3
    assert (stock(real_inv).sold, stock(real_inv).available) == (4, 6)


def test_a_run_checks_only_the_skus_changed_since_the_last_run(real_inv: Inventory, pg_sessions) -> None:
    for n in range(12):
        make_product(real_inv, f"SKU-{n}", stock=5)
    _settled(real_inv, pg_sessions)
    assert run_reconciliation(real_inv, pg_sessions, repair=True).skus_checked == 0
    real_inv.reservations.reserve("x", {"SKU-3": 1})
    real_inv.catalog.adjust_stock("SKU-7", add=1)
    report = run_reconciliation(real_inv, pg_sessions, repair=True)
    assert report.skus_checked == 2 and report.clean  # the unpersisted adjustment counts from the outbox
    assert run_reconciliation(real_inv, pg_sessions, repair=True, full=True).skus_checked == 12


def test_reconciling_during_live_sales_never_repairs_a_correct_sku(real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=200)
    _settled(real_inv, pg_sessions)
    sold: list[str] = []
    stop = threading.Event()

    def buyer(n: int) -> None:
        for i in range(40):
            try:
                held = real_inv.reservations.reserve(f"t{n}-{i}", {"HOT": 1})
                sold.append(real_inv.reservations.checkout(held.id).id)
            except InventoryError:
                pass

    def drainer() -> None:
        while not stop.is_set():
            drain_once(real_inv, pg_sessions, batch_size=7, claim_idle_ms=0)

    threads = [threading.Thread(target=buyer, args=(n,)) for n in range(4)] + [threading.Thread(target=drainer)]
    for t in threads:
        t.start()
    reports = [run_reconciliation(real_inv, pg_sessions, repair=True) for _ in range(10)]
    for t in threads[:4]:
        t.join()
    stop.set()
    threads[4].join()

    assert all(r.skus_repaired == 0 for r in reports), [r.drifts for r in reports]
    persist_now(real_inv, pg_sessions)
    assert (stock(real_inv).sold, stock(real_inv).total) == (len(sold), 200) == (160, 200)
    assert run_reconciliation(real_inv, pg_sessions, repair=True, full=True).clean


def test_a_run_waits_while_persistence_is_far_behind(real_inv: Inventory, pg_sessions, monkeypatch) -> None:
    from inventory import reconcile

    make_product(real_inv, "HOT", stock=5)
    monkeypatch.setattr(reconcile, "MAX_BACKLOG", 1)
    report = run_reconciliation(real_inv, pg_sessions, repair=True)
    assert report.skipped and report.skus_checked == 0 and report.run_id is None
    assert real_inv.redis.sismember(real_inv.keys.of_sku("HOT").dirty, "HOT")


def _drifts(report) -> list[tuple]:
    return [(d.sku, d.kind, d.redis, d.expected, d.units_repaired) for d in report.drifts]


def test_slices_smaller_than_the_holds_and_the_outbox_give_the_same_report_as_one_slice(
        real_inv: Inventory, pg_sessions, monkeypatch) -> None:
    from inventory import reconcile_reads

    for n in range(5):
        make_product(real_inv, f"S{n}", stock=100)
    _settled(real_inv, pg_sessions)
    for i in range(30):  # S0 gets 30 open holds, S1..S4 7-8 each; 11 outbox entries wait unpersisted
        real_inv.reservations.reserve(f"h{i}", {"S0": 1, f"S{1 + i % 4}": 1})
    _sell(real_inv, 6, sku="S1")
    for n in range(5):
        real_inv.catalog.adjust_stock(f"S{n}", add=1)
    real_inv.redis.hincrby(real_inv.keys.sku("S0").stock, "avail", 2)
    real_inv.redis.hincrby(real_inv.keys.sku("S3").stock, "held", -1)
    real_inv.redis.hincrby(real_inv.keys.sku("S3").stock, "avail", 1)
    whole = run_reconciliation(real_inv, pg_sessions, repair=False, full=True)
    assert outbox_length(real_inv) == 11 and len(read_open_holds(real_inv.redis, real_inv.keys.sku("S0"))) == 30

    for name, value in (("OUTBOX_SLICE", 4), ("HOLDS_SLICE", 3), ("BATCH_HOLDS", 5), ("BATCH_SKUS", 2),
                        ("SET_SLICE", 2)):
        monkeypatch.setattr(reconcile_reads, name, value)
    sliced = run_reconciliation(real_inv, pg_sessions, repair=False, full=True)
    assert _drifts(sliced) == _drifts(whole) and [d[:2] for d in _drifts(whole)] == \
        [("S0", "counters"), ("S3", "counters")]
    assert sliced.skus_checked == whole.skus_checked == 5

    repaired = run_reconciliation(real_inv, pg_sessions, repair=True, full=True)
    assert repaired.skus_repaired == 2 and repaired.units_repaired == 3
    assert stock(real_inv, "S0").held == 30 and stock(real_inv, "S3").held == 7
    assert run_reconciliation(real_inv, pg_sessions, repair=True, full=True).clean
