"""reserve: all-or-nothing holds with sale checks, limits, lazy expiry and idempotency (fakeredis and redis-server)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from inventory import Inventory
from tests.clocks import ManualClock
from inventory.errors import (
    IdempotencyConflict,
    InvalidArgument,
    LimitExceeded,
    ProductNotFound,
    SaleNotActive,
    SoldOut,
)
from inventory.models import Status, from_ms
from inventory.part_calls import fingerprint
from tests.helpers import assert_invariant, make_product, record, stock


def test_reserve_holds_stock_and_reports_price_and_expiry(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, stock=10, price=1500)
    held = inv.reservations.reserve("alice", {"HOT": 3}, ttl_seconds=60)
    assert held.status is Status.HELD
    assert held.total == 4500
    assert held.expires_at - held.created_at == timedelta(seconds=60)
    level = stock(inv)
    assert (level.available, level.held, level.sold, level.total) == (7, 3, 0, 10)
    assert inv.reservations.get(held.id, user_id="alice").lines == held.lines


def test_reserve_rejects_when_quantity_exceeds_available(inv: Inventory) -> None:
    make_product(inv, stock=2)
    with pytest.raises(SoldOut) as caught:
        inv.reservations.reserve("alice", {"HOT": 3})
    assert caught.value.details == {"sku": "HOT", "available": 2, "requested": 3,
                                     "waitlist_length": 0, "waitlist_open": True}
    assert stock(inv).available == 2


def test_reserve_is_all_or_nothing_across_lines(inv: Inventory) -> None:
    make_product(inv, "A", stock=5)
    make_product(inv, "B", stock=1)
    with pytest.raises(SoldOut) as caught:
        inv.reservations.reserve("alice", [("A", 2), ("B", 2)])
    assert caught.value.details["sku"] == "B"
    assert stock(inv, "A").available == 5 and stock(inv, "B").available == 1


def test_reserve_unknown_product_is_not_found(inv: Inventory) -> None:
    with pytest.raises(ProductNotFound):
        inv.reservations.reserve("alice", {"NOPE": 1})


@pytest.mark.parametrize(
    "items",
    [{"HOT": 0}, {"HOT": -1}, {"HOT": 1.5}, {"HOT": True}, {}, {"bad sku": 1}, [("HOT", 1), ("HOT", 1)],
     {"HOT\n": 1}],
)
def test_reserve_rejects_invalid_lines_and_changes_nothing(inv: Inventory, items) -> None:  # noqa: ANN001
    make_product(inv, stock=5)
    with pytest.raises(InvalidArgument):
        inv.reservations.reserve("alice", items)
    assert stock(inv).available == 5


@pytest.mark.parametrize("user", ["", "has|pipe", "x" * 200, None, "alice\n"])
def test_reserve_rejects_invalid_user_ids(inv: Inventory, user) -> None:  # noqa: ANN001
    make_product(inv, stock=5)
    with pytest.raises(InvalidArgument):
        inv.reservations.reserve(user, {"HOT": 1})


@pytest.mark.parametrize("ttl", [0, -5, 10**9, 2.5])
def test_reserve_rejects_ttl_outside_bounds(inv: Inventory, ttl) -> None:  # noqa: ANN001
    make_product(inv, stock=5)
    with pytest.raises(InvalidArgument):
        inv.reservations.reserve("alice", {"HOT": 1}, ttl_seconds=ttl)


def test_reserve_refuses_paused_not_started_and_ended_sales(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, stock=5)
    inv.catalog.configure("HOT", paused=True)
    with pytest.raises(SaleNotActive) as caught:
        inv.reservations.reserve("alice", {"HOT": 1})
    assert caught.value.details["reason"] == "paused"
    start = clock.now_ms()
    inv.catalog.configure("HOT", paused=False, starts_at=from_ms(start + 60_000), ends_at=from_ms(start + 120_000))
    with pytest.raises(SaleNotActive) as caught:
        inv.reservations.reserve("alice", {"HOT": 1})
    assert caught.value.details["reason"] == "not_started"
    clock.advance(60)
    assert inv.reservations.reserve("alice", {"HOT": 1}).status is Status.HELD
    clock.advance(60)
    with pytest.raises(SaleNotActive) as caught:
        inv.reservations.reserve("bob", {"HOT": 1})
    assert caught.value.details["reason"] == "ended"


def test_per_user_limit_counts_open_holds_and_orders(inv: Inventory) -> None:
    make_product(inv, stock=10, limit=3)
    first = inv.reservations.reserve("alice", {"HOT": 2})
    inv.reservations.checkout(first.id, user_id="alice")
    with pytest.raises(LimitExceeded) as caught:
        inv.reservations.reserve("alice", {"HOT": 2})
    assert caught.value.details == {"sku": "HOT", "limit": 3, "already": 2}
    inv.reservations.reserve("alice", {"HOT": 1})
    inv.reservations.reserve("bob", {"HOT": 3})
    assert_invariant(stock(inv))


def test_released_units_no_longer_count_toward_the_limit(inv: Inventory) -> None:
    make_product(inv, stock=10, limit=2)
    held = inv.reservations.reserve("alice", {"HOT": 2})
    inv.reservations.release(held.id, user_id="alice")
    assert inv.reservations.reserve("alice", {"HOT": 2}).status is Status.HELD


def test_reserve_reclaims_expired_holds_lazily_without_a_sweeper(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, stock=2, limit=2)
    inv.reservations.reserve("alice", {"HOT": 2}, ttl_seconds=30)
    with pytest.raises(SoldOut):
        inv.reservations.reserve("bob", {"HOT": 1})
    clock.advance(30)
    inv.reservations.reserve("bob", {"HOT": 2})
    level = stock(inv)
    assert (level.available, level.held) == (0, 2)


def test_same_idempotency_key_replays_the_original_reservation(inv: Inventory) -> None:
    make_product(inv, stock=5)
    first = inv.reservations.reserve("alice", {"HOT": 2}, idempotency_key="k1")
    again = inv.reservations.reserve("alice", {"HOT": 2}, idempotency_key="k1")
    assert again.id == first.id and again.replayed and not first.replayed
    assert stock(inv).held == 2


def test_same_idempotency_key_with_another_body_is_a_conflict(inv: Inventory) -> None:
    make_product(inv, stock=5)
    inv.reservations.reserve("alice", {"HOT": 2}, idempotency_key="k1")
    with pytest.raises(IdempotencyConflict):
        inv.reservations.reserve("alice", {"HOT": 3}, idempotency_key="k1")
    assert stock(inv).held == 2


def test_only_a_keyed_reservation_keeps_a_request_fingerprint(inv: Inventory) -> None:
    """An unkeyed reserve gets a fresh random token that no later request can carry, so its record
    stores no fingerprint (34 bytes less per open hold); a keyed one keeps it to detect conflicts: all 32
    digits in a key of its own, the first 16 (64 bits) when the record is packed in its bucket."""
    make_product(inv, stock=5)
    long_user = "carol-" + "x" * 60  # too long to pack: its record is a key of its own
    held = {user: inv.reservations.reserve(user, {"HOT": 1}, ttl_seconds=60, idempotency_key=key)
            for user, key in (("alice", None), ("bob", "k1"), (long_user, "k1"))}
    fields = {user: record(inv, r.id) for user, r in held.items()}
    assert "fp" not in fields["alice"]
    assert fields["bob"]["fp"] == fingerprint("bob", [("HOT", 1)], 60_000)[:16]
    assert fields[long_user]["fp"] == fingerprint(long_user, [("HOT", 1)], 60_000)
    for user in ("bob", long_user):
        with pytest.raises(IdempotencyConflict):
            inv.reservations.reserve(user, {"HOT": 2}, ttl_seconds=60, idempotency_key="k1")
        again = inv.reservations.reserve(user, {"HOT": 1}, ttl_seconds=60, idempotency_key="k1")
        assert again.id == held[user].id
    assert stock(inv).held == 3


def test_idempotency_keys_are_scoped_per_user(inv: Inventory) -> None:
    make_product(inv, stock=5)
    a = inv.reservations.reserve("alice", {"HOT": 1}, idempotency_key="same")
    b = inv.reservations.reserve("bob", {"HOT": 1}, idempotency_key="same")
    assert a.id != b.id and stock(inv).held == 2
