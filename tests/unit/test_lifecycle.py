"""amend, release, checkout and expiry on fakeredis and on redis-server."""

from __future__ import annotations

import pytest

from inventory import Inventory
from tests.clocks import ManualClock
from inventory.errors import (
    InvalidArgument,
    LimitExceeded,
    ReservationClosed,
    ReservationExpired,
    ReservationNotFound,
    SoldOut,
)
from inventory.models import Status
from tests.helpers import assert_invariant, make_product, outbox_entries, outbox_length, stock


@pytest.fixture
def shop(inv: Inventory) -> Inventory:
    make_product(inv, "A", stock=10, price=100, limit=5)
    make_product(inv, "B", stock=3, price=250)
    return inv


def test_amend_adds_changes_and_removes_lines_atomically(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 2})
    amended = shop.reservations.amend(held.id, {"A": 4, "B": 1}, user_id="alice")
    assert {(l.sku, l.qty) for l in amended.lines} == {("A", 4), ("B", 1)}
    assert amended.expires_at == held.expires_at
    assert stock(shop, "A").held == 4 and stock(shop, "B").held == 1
    amended = shop.reservations.amend(held.id, {"A": 0}, user_id="alice")
    assert [(l.sku, l.qty) for l in amended.lines] == [("B", 1)]
    assert (stock(shop, "A").available, stock(shop, "A").held) == (10, 0)


def test_amend_that_cannot_be_met_changes_nothing(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 2})
    with pytest.raises(SoldOut):
        shop.reservations.amend(held.id, {"A": 3, "B": 4}, user_id="alice")
    with pytest.raises(LimitExceeded):
        shop.reservations.amend(held.id, {"A": 6}, user_id="alice")
    assert [(l.sku, l.qty) for l in shop.reservations.get(held.id).lines] == [("A", 2)]
    assert (stock(shop, "A").held, stock(shop, "B").held) == (2, 0)


def test_amend_refuses_to_empty_a_reservation(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 2})
    with pytest.raises(InvalidArgument):
        shop.reservations.amend(held.id, {"A": 0}, user_id="alice")
    assert stock(shop, "A").held == 2


def test_amend_of_expired_or_foreign_reservation_is_refused(shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 2}, ttl_seconds=10)
    with pytest.raises(ReservationNotFound):
        shop.reservations.amend(held.id, {"A": 1}, user_id="mallory")
    clock.advance(10)
    with pytest.raises(ReservationExpired):
        shop.reservations.amend(held.id, {"A": 1}, user_id="alice")


def test_release_returns_stock_exactly_once(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 2, "B": 3})
    assert shop.reservations.release(held.id, user_id="alice").status is Status.RELEASED
    assert shop.reservations.release(held.id, user_id="alice").status is Status.RELEASED
    assert (stock(shop, "A").available, stock(shop, "B").available) == (10, 3)


def test_release_of_another_users_reservation_is_not_found(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 1})
    with pytest.raises(ReservationNotFound):
        shop.reservations.release(held.id, user_id="mallory")
    with pytest.raises(ReservationNotFound):
        shop.reservations.get(held.id, user_id="mallory")
    assert stock(shop, "A").held == 1


@pytest.mark.parametrize("bad_id", ["", "r_", "o_123abc4567", "r_NOT-HEX!", "r_" + "0" * 30])
def test_malformed_or_unknown_reservation_ids_are_not_found(shop: Inventory, bad_id: str) -> None:
    with pytest.raises(ReservationNotFound):
        shop.reservations.release(bad_id)


def test_checkout_moves_held_to_sold_and_writes_the_outbox(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 2, "B": 1})
    order = shop.reservations.checkout(held.id, user_id="alice")
    assert order.status is Status.PENDING_PAYMENT and order.total == 450
    a = stock(shop, "A")
    assert (a.available, a.held, a.sold) == (8, 0, 2)
    entries = outbox_entries(shop)
    created = [f for _, f in entries if f[b"type"] == b"order_created"]
    # One event per partition the order's lines live in (one on a single node; A and B may be two on a cluster)
    assert {f[b"order"].decode() for f in created} == {order.id}
    assert sorted(line for f in created for line in f[b"lines"].split(b",")) == [b"A:2:100", b"B:1:250"]
    assert [o.id for o in shop.reservations.list_orders("alice")] == [order.id]


def test_checkout_is_idempotent(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 2})
    first = shop.reservations.checkout(held.id, user_id="alice")
    again = shop.reservations.checkout(held.id, user_id="alice")
    assert again.id == first.id and again.replayed
    assert stock(shop, "A").sold == 2
    assert outbox_length(shop) == 2 + 2 + 1  # 2 configures, 2 seeds, 1 order


def test_checkout_of_expired_reservation_is_refused_and_returns_stock(shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 2}, ttl_seconds=10)
    clock.advance(10)
    with pytest.raises(ReservationExpired):
        shop.reservations.checkout(held.id, user_id="alice")
    assert (stock(shop, "A").available, stock(shop, "A").sold) == (10, 0)
    assert shop.reservations.get(held.id).status is Status.EXPIRED


def test_checkout_of_released_reservation_is_refused(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 2})
    shop.reservations.release(held.id)
    with pytest.raises(ReservationClosed) as caught:
        shop.reservations.checkout(held.id, user_id="alice")
    assert caught.value.details["status"] == "released"


def test_release_after_checkout_is_refused(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 2})
    shop.reservations.checkout(held.id)
    with pytest.raises(ReservationClosed):
        shop.reservations.release(held.id)
    assert stock(shop, "A").sold == 2


def test_expiry_sweep_releases_due_holds_in_batches(shop: Inventory, clock: ManualClock) -> None:
    for n in range(7):
        shop.reservations.reserve(f"user{n}", {"A": 1}, ttl_seconds=10)
    keep = shop.reservations.reserve("late", {"A": 1}, ttl_seconds=60)
    clock.advance(10)
    result = shop.reservations.expire_due(batch_size=3)
    # 3 batches in A's partition, and one (empty) look into each other partition of a cluster
    assert (result.expired, result.units_returned, result.batches) == (7, 7, 3 + len(shop.keys.parts) - 1)
    level = stock(shop, "A")
    assert (level.available, level.held) == (9, 1)
    assert shop.reservations.get(keep.id).status is Status.HELD
    assert shop.reservations.expire_due().expired == 0


def test_sweep_after_lazy_reclaim_does_not_return_stock_twice(shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 2, "B": 3}, ttl_seconds=10)
    clock.advance(10)
    shop.reservations.reserve("bob", {"B": 3})  # lazily reclaims alice's B line only
    result = shop.reservations.expire_due()
    assert (result.expired, result.units_returned) == (1, 2)
    assert shop.reservations.get(held.id).status is Status.EXPIRED
    for sku in ("A", "B"):
        assert_invariant(stock(shop, sku))
    assert (stock(shop, "A").available, stock(shop, "B").held) == (10, 3)
