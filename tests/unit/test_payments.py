"""record_payment: paid/failed once per event id, including payment-before-checkout and after expiry."""

from __future__ import annotations

import pytest

from inventory import Inventory
from tests.clocks import ManualClock
from inventory.errors import IdempotencyConflict, InvalidArgument, OrderNotFound, ReservationNotFound
from inventory.models import Status
from tests.helpers import assert_invariant, make_product, outbox_entries, stock


@pytest.fixture
def shop(inv: Inventory) -> Inventory:
    make_product(inv, "A", stock=10, price=100, limit=4)
    return inv


def _outbox_types(inv: Inventory) -> list[str]:
    return [f[b"type"].decode() for _, f in outbox_entries(inv) if f[b"type"].startswith(b"order")]


def test_paid_marks_the_order_paid(shop: Inventory) -> None:
    order = shop.reservations.checkout(shop.reservations.reserve("alice", {"A": 2}).id)
    outcome = shop.reservations.record_payment(event_id="ev1", result="paid", order_id=order.id)
    assert (outcome.status, outcome.replayed) == (Status.PAID, False)
    assert shop.reservations.get_order(order.id).status is Status.PAID
    assert stock(shop, "A").sold == 2
    assert _outbox_types(shop) == ["order_created", "order_paid"]


def test_failed_payment_returns_stock_once_however_often_it_is_sent(shop: Inventory) -> None:
    order = shop.reservations.checkout(shop.reservations.reserve("alice", {"A": 4}).id)
    outcomes = [shop.reservations.record_payment(event_id="ev-fail", result="failed", order_id=order.id)
                for _ in range(20)]
    assert [o.replayed for o in outcomes] == [False] + [True] * 19
    level = stock(shop, "A")
    assert (level.available, level.sold) == (10, 0)
    assert _outbox_types(shop) == ["order_created", "order_payment_failed"]
    shop.reservations.reserve("alice", {"A": 4})  # the failed order no longer counts toward the limit


def test_same_event_id_with_another_result_is_a_conflict(shop: Inventory) -> None:
    order = shop.reservations.checkout(shop.reservations.reserve("alice", {"A": 1}).id)
    shop.reservations.record_payment(event_id="ev1", result="paid", order_id=order.id)
    with pytest.raises(IdempotencyConflict):
        shop.reservations.record_payment(event_id="ev1", result="failed", order_id=order.id)
    assert shop.reservations.get_order(order.id).status is Status.PAID


def test_paid_before_checkout_checks_out_and_pays_in_one_step(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 3})
    outcome = shop.reservations.record_payment(event_id="early", result="paid", reservation_id=held.id)
    assert outcome.status is Status.PAID and outcome.order_id
    assert (stock(shop, "A").held, stock(shop, "A").sold) == (0, 3)
    order = shop.reservations.checkout(held.id)  # the storefront's late checkout sees the paid order
    assert order.status is Status.PAID and order.replayed
    assert _outbox_types(shop) == ["order_created", "order_paid"]


def test_failed_before_checkout_releases_stock_exactly_once(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 3})
    shop.reservations.record_payment(event_id="f1", result="failed", reservation_id=held.id)
    shop.reservations.record_payment(event_id="f2", result="failed", reservation_id=held.id)
    shop.reservations.release(held.id)
    level = stock(shop, "A")
    assert (level.available, level.held, level.sold) == (10, 0, 0)


def test_paid_after_expiry_never_oversells_and_requires_a_refund(shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 4}, ttl_seconds=10)
    clock.advance(10)
    shop.reservations.reserve("bob", {"A": 4})
    shop.reservations.reserve("carol", {"A": 4})
    outcome = shop.reservations.record_payment(event_id="late", result="paid", reservation_id=held.id)
    assert outcome.status is Status.REFUND_REQUIRED
    level = stock(shop, "A")
    assert (level.available, level.held, level.sold) == (2, 8, 0)
    assert shop.reservations.get_order(outcome.order_id).status is Status.REFUND_REQUIRED
    assert _outbox_types(shop) == ["order_refund_required"]


def test_paid_after_release_requires_a_refund(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 1})
    shop.reservations.release(held.id)
    outcome = shop.reservations.record_payment(event_id="p", result="paid", reservation_id=held.id)
    assert outcome.status is Status.REFUND_REQUIRED
    assert stock(shop, "A").available == 10


def test_paid_after_failed_requires_a_refund_and_keeps_stock(shop: Inventory) -> None:
    order = shop.reservations.checkout(shop.reservations.reserve("alice", {"A": 2}).id)
    shop.reservations.record_payment(event_id="f", result="failed", order_id=order.id)
    outcome = shop.reservations.record_payment(event_id="p", result="paid", order_id=order.id)
    assert outcome.status is Status.REFUND_REQUIRED
    assert_invariant(stock(shop, "A"))
    assert stock(shop, "A").available == 10


def test_failed_after_paid_leaves_the_order_paid(shop: Inventory) -> None:
    order = shop.reservations.checkout(shop.reservations.reserve("alice", {"A": 2}).id)
    shop.reservations.record_payment(event_id="p", result="paid", order_id=order.id)
    outcome = shop.reservations.record_payment(event_id="f", result="failed", order_id=order.id)
    assert outcome.status is Status.PAID
    assert stock(shop, "A").sold == 2


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"event_id": "e", "result": "refunded", "order_id": "o_1234567890ab"}, InvalidArgument),
        ({"event_id": "", "result": "paid", "order_id": "o_1234567890ab"}, InvalidArgument),
        ({"event_id": "e", "result": "paid"}, InvalidArgument),
        ({"event_id": "e", "result": "paid", "order_id": "o_1234567890ab"}, OrderNotFound),
        ({"event_id": "e", "result": "paid", "reservation_id": "r_1234567890ab"}, ReservationNotFound),
        ({"event_id": "e", "result": "paid", "order_id": "garbage"}, OrderNotFound),
    ],
)
def test_bad_payment_events_are_refused(shop: Inventory, kwargs, error) -> None:  # noqa: ANN001
    with pytest.raises(error):
        shop.reservations.record_payment(**kwargs)
