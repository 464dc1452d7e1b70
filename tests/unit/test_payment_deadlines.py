"""Payment deadlines: an unpaid order expires on Redis's clock, its units back exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from inventory import Inventory, Settings
from inventory.errors import IdempotencyConflict
from inventory.models import Status
from inventory.multipart import CONVERGE_AFTER_MS
from tests.clocks import ManualClock
from tests.helpers import assert_invariant, make_product, outbox_entries, stock
from tests.unit.test_multipart import Crash, crash_on, levels
from tests.unit.test_scripts import skus_in_distinct_partitions

PAYMENT_TTL = 900


@pytest.fixture
def shop(inv: Inventory) -> Inventory:
    make_product(inv, "A", stock=10, price=100, limit=4)
    return inv


def _order_events(inv: Inventory) -> list[str]:
    return [f[b"type"].decode() for _, f in outbox_entries(inv) if f[b"type"].startswith(b"order")]


def _level(inv: Inventory, sku: str = "A") -> tuple[int, int, int]:
    level = stock(inv, sku)
    assert_invariant(level)
    return level.available, level.held, level.sold


def test_checkout_sets_a_payment_deadline_on_redis_time(shop: Inventory, clock: ManualClock) -> None:
    order = shop.reservations.checkout(shop.reservations.reserve("alice", {"A": 2}).id)
    assert order.payment_due_at is not None
    assert int(order.payment_due_at.timestamp() * 1000) == clock.now_ms() + PAYMENT_TTL * 1000


def test_the_sweeper_expires_an_unpaid_order_and_returns_its_units_once(shop: Inventory, clock: ManualClock) -> None:
    order = shop.reservations.checkout(shop.reservations.reserve("alice", {"A": 4}).id)
    clock.advance(PAYMENT_TTL - 1)
    shop.reservations.expire_due()
    assert shop.reservations.get_order(order.id).status is Status.PENDING_PAYMENT and _level(shop) == (6, 0, 4)
    clock.advance(1)
    for _ in range(3):
        shop.reservations.expire_due()
    assert shop.reservations.get_order(order.id).status is Status.PAYMENT_EXPIRED
    assert _level(shop) == (10, 0, 0)
    assert _order_events(shop) == ["order_created", "order_payment_expired"]
    shop.reservations.reserve("alice", {"A": 4})  # the expired order no longer counts toward the limit


def test_reads_show_the_deadline_passed_before_any_sweep(shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 1})
    order = shop.reservations.checkout(held.id)
    clock.advance(PAYMENT_TTL)
    assert shop.reservations.get_order(order.id).status is Status.PAYMENT_EXPIRED
    assert shop.reservations.get(held.id).status is Status.PAYMENT_EXPIRED


def test_a_paid_event_after_the_deadline_is_refund_required_and_never_oversells(
        shop: Inventory, clock: ManualClock) -> None:
    order = shop.reservations.checkout(shop.reservations.reserve("alice", {"A": 4}).id)
    clock.advance(PAYMENT_TTL + 5)  # no sweep ran: the payment itself finds the deadline passed
    outcome = shop.reservations.record_payment(event_id="late", result="paid", order_id=order.id)
    assert outcome.status is Status.REFUND_REQUIRED and _level(shop) == (10, 0, 0)
    shop.reservations.expire_due()
    assert _level(shop) == (10, 0, 0)
    again = shop.reservations.record_payment(event_id="late", result="paid", order_id=order.id)
    assert again.replayed and again.status is Status.REFUND_REQUIRED
    assert _order_events(shop) == ["order_created", "order_payment_expired", "order_refund_required"]


def test_a_paid_event_after_a_swept_expiry_is_refund_required(shop: Inventory, clock: ManualClock) -> None:
    order = shop.reservations.checkout(shop.reservations.reserve("alice", {"A": 2}).id)
    clock.advance(PAYMENT_TTL)
    shop.reservations.expire_due()
    shop.reservations.reserve("bob", {"A": 4})  # the returned units sell to someone else
    outcome = shop.reservations.record_payment(event_id="late", result="paid", order_id=order.id)
    assert outcome.status is Status.REFUND_REQUIRED and _level(shop) == (6, 4, 0)


def test_a_failed_event_after_the_deadline_changes_nothing_more(shop: Inventory, clock: ManualClock) -> None:
    order = shop.reservations.checkout(shop.reservations.reserve("alice", {"A": 3}).id)
    clock.advance(PAYMENT_TTL)
    outcome = shop.reservations.record_payment(event_id="f", result="failed", order_id=order.id)
    assert outcome.status is Status.PAYMENT_EXPIRED and _level(shop) == (10, 0, 0)
    with pytest.raises(IdempotencyConflict):
        shop.reservations.record_payment(event_id="f", result="paid", order_id=order.id)
    assert _order_events(shop) == ["order_created", "order_payment_expired"]


def test_a_payment_before_the_deadline_takes_the_order_off_the_sweep(shop: Inventory, clock: ManualClock) -> None:
    order = shop.reservations.checkout(shop.reservations.reserve("alice", {"A": 2}).id)
    shop.reservations.record_payment(event_id="p", result="paid", order_id=order.id)
    assert shop.ctx.redis.zscore(shop.keys.of_token(order.id[2:]).expiries, order.id[2:]) is None
    clock.advance(PAYMENT_TTL * 2)
    shop.reservations.expire_due()
    assert shop.reservations.get_order(order.id).status is Status.PAID and _level(shop) == (8, 0, 2)


def test_releasing_an_expired_order_is_a_harmless_no_op(shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 2})
    shop.reservations.checkout(held.id)
    clock.advance(PAYMENT_TTL)
    shop.reservations.expire_due()
    assert shop.reservations.release(held.id).status is Status.PAYMENT_EXPIRED and _level(shop) == (10, 0, 0)


@pytest.fixture
def basket_shop(any_redis: Any, settings: Settings, clock: ManualClock) -> tuple[Inventory, list[str]]:
    inv = Inventory(any_redis, settings.with_overrides(redis_partitions=8), clock)
    skus = skus_in_distinct_partitions(inv.keys, 3)
    for sku in skus:
        make_product(inv, sku, stock=3, price=100)
    return inv, skus


def test_a_basket_over_partitions_expires_at_its_homes_deadline_only(basket_shop, clock) -> None:  # noqa: ANN001
    inv, skus = basket_shop
    order = inv.reservations.checkout(inv.reservations.reserve("alice", {sku: 1 for sku in skus}).id)
    clock.advance(PAYMENT_TTL - 1)
    inv.reservations.expire_due()
    assert levels(inv, skus) == [(2, 0, 1)] * 3
    clock.advance(1)
    inv.reservations.expire_due()
    assert levels(inv, skus) == [(3, 0, 0)] * 3
    assert inv.reservations.get_order(order.id).status is Status.PAYMENT_EXPIRED
    late = inv.reservations.record_payment(event_id="late", result="paid", order_id=order.id)
    assert late.status is Status.REFUND_REQUIRED and levels(inv, skus) == [(3, 0, 0)] * 3


def test_a_basket_expiry_killed_after_the_home_is_finished_by_the_sweeper(  # noqa: ANN001
        basket_shop, clock, monkeypatch) -> None:
    inv, skus = basket_shop
    inv.reservations.checkout(inv.reservations.reserve("alice", {sku: 1 for sku in skus}).id)
    clock.advance(PAYMENT_TTL)
    crash_on(monkeypatch, inv.reservations.multi, "converge", after=0)
    with pytest.raises(Crash):
        inv.reservations.expire_due()
    monkeypatch.undo()
    assert levels(inv, skus)[0] == (3, 0, 0) and levels(inv, skus)[1] == (2, 0, 1)
    clock.advance(CONVERGE_AFTER_MS / 1000 + 1)
    inv.reservations.expire_due()
    assert levels(inv, skus) == [(3, 0, 0)] * 3


def test_a_late_payment_on_a_basket_never_pays_a_part_whose_units_went_back(basket_shop, clock) -> None:  # noqa: ANN001
    inv, skus = basket_shop
    order = inv.reservations.checkout(inv.reservations.reserve("alice", {sku: 1 for sku in skus}).id)
    clock.advance(PAYMENT_TTL + 1)  # no sweep: the payment finds the home's deadline passed
    outcome = inv.reservations.record_payment(event_id="late", result="paid", order_id=order.id)
    assert outcome.status is Status.REFUND_REQUIRED
    assert levels(inv, skus) == [(3, 0, 0)] * 3
    part_states = {inv.reservations.calls.read(inv.keys.parts[inv.keys.partition_of(sku)], order.id[2:])["st"]
                   for sku in skus}
    assert part_states == {"refund_required"}
