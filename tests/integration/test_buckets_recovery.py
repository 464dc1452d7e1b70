"""A split SKU after Redis lost its data: rebuilt from PostgreSQL with its buckets, sums and limits (real servers)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from inventory import Inventory
from inventory.errors import InventoryError
from inventory.persistence import persist_now
from inventory.reconcile import run_reconciliation
from inventory.recovery import check_recovery
from tests.conftest import delete_prefix
from tests.helpers import assert_invariant, make_product, stock


def _try(inv: Inventory, user: str) -> str:
    try:
        inv.reservations.reserve(user, {"HOT": 1})
        return "held"
    except InventoryError as error:
        return error.code


def test_a_flushed_split_sku_comes_back_split_with_exact_counts_and_limits(real_inv: Inventory, pg_sessions,
                                                                          key_prefix: str) -> None:
    assert check_recovery(real_inv, pg_sessions).state == "initialized"
    make_product(real_inv, "HOT", stock=40, limit=1)
    real_inv.buckets.split("HOT", 4)
    orders = [real_inv.reservations.checkout(real_inv.reservations.reserve(f"b{i}", {"HOT": 1}).id).id
              for i in range(10)]
    real_inv.reservations.record_payment(event_id="e1", result="paid", order_id=orders[0])
    real_inv.reservations.reserve("holder", {"HOT": 1})  # an open hold dies with the flush
    persist_now(real_inv, pg_sessions)

    delete_prefix(real_inv.redis, key_prefix)
    real_inv.buckets.forget("HOT")

    check = check_recovery(real_inv, pg_sessions)
    assert check.state == "rebuilt"
    product = real_inv.catalog.get("HOT")
    assert product.buckets == 4
    assert (product.stock.total, product.stock.sold, product.stock.held, product.stock.available) == (40, 10, 0, 30)
    assert _try(real_inv, "b3") == "limit_exceeded"  # her order from before the flush still counts
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda n: _try(real_inv, f"new-{n}"), range(40)))
    assert outcomes.count("held") == 30 and outcomes.count("sold_out") == 10
    assert_invariant(stock(real_inv))
    persist_now(real_inv, pg_sessions)
    assert run_reconciliation(real_inv, pg_sessions, repair=True, full=True).clean


def test_the_dashboards_database_figures_sum_a_split_products_buckets(real_inv: Inventory, pg_sessions) -> None:
    from inventory.operations import read_persisted

    make_product(real_inv, "HOT", stock=40, limit=1)
    layout = real_inv.buckets.split("HOT", 4)
    orders = [real_inv.reservations.checkout(real_inv.reservations.reserve(f"b{i}", {"HOT": 1}).id).id
              for i in range(12)]
    for n, order in enumerate(orders[:9]):
        real_inv.reservations.record_payment(event_id=f"e{n}", result="paid", order_id=order)
    persist_now(real_inv, pg_sessions)
    figures = read_persisted(pg_sessions, ["HOT"], {"HOT": layout.buckets})
    assert figures.paid == {"HOT": 9}  # paid units over every bucket, the quota lines not counted
    assert figures.totals == {"HOT": (40, 12)}
    with pg_sessions() as session:  # the system of record: what buyers bought, one row per bucket line
        rows = session.execute(sa.text("SELECT sku, qty FROM order_lines")).all()
    assert len(rows) == 12 and not any("@q" in sku for sku, _ in rows)
    assert {sku.split("@")[0] for sku, _ in rows} == {"HOT"} and sum(qty for _, qty in rows) == 12


def test_a_flushed_quota_counts_orders_from_before_the_split_and_from_every_bucket(
        real_inv: Inventory, pg_sessions, key_prefix: str) -> None:
    assert check_recovery(real_inv, pg_sessions).state == "initialized"
    make_product(real_inv, "HOT", stock=40, limit=2)
    early = {f"u{i}": real_inv.reservations.checkout(real_inv.reservations.reserve(f"u{i}", {"HOT": 1}).id)
             for i in range(6)}  # one unit each before the split
    real_inv.buckets.split("HOT", 4)
    for user in ("u0", "u1", "u2"):  # their second unit, from whichever bucket serves them
        real_inv.reservations.checkout(real_inv.reservations.reserve(user, {"HOT": 1}).id)
    real_inv.reservations.record_payment(event_id="f-u5", result="failed", order_id=early["u5"].id)
    persist_now(real_inv, pg_sessions)

    delete_prefix(real_inv.redis, key_prefix)
    real_inv.buckets.forget("HOT")
    assert check_recovery(real_inv, pg_sessions).state == "rebuilt"
    assert [_try(real_inv, f"u{i}") for i in range(3)] == ["limit_exceeded"] * 3  # 2 units each already
    assert [_try(real_inv, f"u{i}") for i in range(3, 6)] == ["held"] * 3  # 1 unit (u5: none) so far
    assert [_try(real_inv, f"u{i}") for i in range(3, 6)] == ["limit_exceeded", "limit_exceeded", "held"]


def test_a_shrunk_split_sku_comes_back_with_the_buckets_it_had_active_and_its_units_move_into_them(
        real_inv: Inventory, pg_sessions, key_prefix: str) -> None:
    assert check_recovery(real_inv, pg_sessions).state == "initialized"
    make_product(real_inv, "HOT", stock=64)
    real_inv.buckets.split("HOT", 8)
    real_inv.buckets.split("HOT", 3)  # shrunk while live: buckets 3-7 retired
    orders = [real_inv.reservations.checkout(real_inv.reservations.reserve(f"b{i}", {"HOT": 1}).id).id
              for i in range(5)]
    persist_now(real_inv, pg_sessions)
    with pg_sessions() as session:
        assert session.scalar(sa.text("SELECT buckets FROM products WHERE sku = 'HOT'")) == 3

    delete_prefix(real_inv.redis, key_prefix)
    real_inv.buckets.forget("HOT")
    assert check_recovery(real_inv, pg_sessions).state == "rebuilt"

    layout = real_inv.buckets.layout("HOT", fresh=True)
    assert (layout.active, layout.created) == (3, 8)  # not every bucket it ever had
    assert real_inv.catalog.get("HOT").buckets == 3
    real_inv.buckets.rebalance("HOT")  # what the sweeper does: retired buckets emptied into the active ones
    retired = [real_inv.redis.hmget(real_inv.keys.sku(name).stock, "avail", "held") for name in layout.buckets[3:]]
    assert all(int(avail) == 0 and int(held) == 0 for avail, held in retired), retired
    level = stock(real_inv)
    assert (level.total, level.sold, level.held, level.available) == (64, 5, 0, 59)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda n: _try(real_inv, f"new-{n}"), range(70)))
    assert outcomes.count("held") == 59 and outcomes.count("sold_out") == 11
    assert_invariant(stock(real_inv))
    real_inv.reservations.record_payment(event_id="e1", result="paid", order_id=orders[0])
    persist_now(real_inv, pg_sessions)
    assert run_reconciliation(real_inv, pg_sessions, repair=True, full=True).clean
