"""A partitioned key space on real redis-server and PostgreSQL: orders whose parts live in several
partitions persist as one order; reconcile and recovery work per partition (a partition that lost
its data is rebuilt alone, the others keep selling)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from inventory import Inventory, Settings
from inventory.persistence import persist_now
from inventory.reconcile import run_reconciliation
from inventory.recovery import check_recovery
from inventory.tables import OrderLineRow, OrderRow, PaymentEventRow
from tests.clocks import ManualClock
from tests.helpers import assert_invariant, make_product, stock
from tests.unit.test_scripts import skus_in_distinct_partitions


@pytest.fixture
def parted(real_redis: Any, settings: Settings, clock: ManualClock) -> tuple[Inventory, list[str]]:
    inv = Inventory(real_redis, settings.with_overrides(redis_partitions=4), clock)
    skus = skus_in_distinct_partitions(inv.keys, 3)
    for sku in skus:
        make_product(inv, sku, stock=5, price=100 * (1 + skus.index(sku)))
    return inv, skus


def test_an_order_with_parts_in_three_partitions_is_one_order_in_postgres(parted, pg_sessions) -> None:  # noqa: ANN001
    inv, skus = parted
    assert check_recovery(inv, pg_sessions).state == "initialized"
    order = inv.reservations.checkout(inv.reservations.reserve("alice", {sku: 1 for sku in skus}).id)
    inv.reservations.record_payment(event_id="pay-1", result="paid", order_id=order.id)
    persist_now(inv, pg_sessions)
    with pg_sessions() as s:
        row = s.get(OrderRow, order.id)
        lines = s.execute(select(OrderLineRow.sku, OrderLineRow.qty).where(OrderLineRow.order_id == order.id)).all()
        payments = s.execute(select(PaymentEventRow.event_id).where(PaymentEventRow.order_id == order.id)).all()
    assert row.status == "paid" and row.total == order.total == sum(line.unit_price for line in order.lines)
    assert sorted(lines) == [(sku, 1) for sku in skus] and payments == [("pay-1",)]
    report = run_reconciliation(inv, pg_sessions, repair=True, full=True)
    assert report.skus_checked == 3 and report.skus_drifted == 0


def test_a_partition_that_lost_its_data_is_rebuilt_alone(parted, pg_sessions) -> None:  # noqa: ANN001
    inv, skus = parted
    assert check_recovery(inv, pg_sessions).state == "initialized"
    order = inv.reservations.checkout(inv.reservations.reserve("alice", {sku: 1 for sku in skus}).id)
    persist_now(inv, pg_sessions)
    lost = inv.keys.of_sku(skus[1])
    for key in inv.redis.scan_iter(match=f"{lost.base}:*"):  # that master came back empty
        inv.redis.delete(key)
    before = {sku: inv.redis.hget(inv.keys.sku(sku).stock, "ver") for sku in skus}
    check = check_recovery(inv, pg_sessions)
    assert check.state == "rebuilt" and check.rebuild is not None and check.rebuild.rebuilt == (skus[1],)
    assert {sku: inv.redis.hget(inv.keys.sku(sku).stock, "ver") for sku in skus if sku != skus[1]} == \
        {sku: v for sku, v in before.items() if sku != skus[1]}  # the other partitions were not touched
    for sku in skus:
        level = stock(inv, sku)
        assert_invariant(level)
        assert (level.available, level.sold) == (4, 1)
    paid = inv.reservations.record_payment(event_id="pay-2", result="paid", order_id=order.id)
    assert paid.status.value == "paid"
    assert check_recovery(inv, pg_sessions).state == "ok"
