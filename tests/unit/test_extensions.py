"""Extensions: a hold or a payment deadline moves later, once per id, never past the lifetime cap."""

from __future__ import annotations

from typing import Any

import pytest

from inventory import Inventory, Settings
from inventory.errors import (
    ExtensionLimit, InvalidArgument, ReservationClosed, ReservationExpired, ReservationNotFound,
)
from inventory.models import Status
from tests.clocks import ManualClock
from tests.helpers import assert_invariant, make_product, record_ttl, stock
from tests.unit.test_multipart import levels
from tests.unit.test_scripts import skus_in_distinct_partitions


@pytest.fixture
def shop(any_redis: Any, settings: Settings, clock: ManualClock) -> Inventory:
    inv = Inventory(any_redis, settings.with_overrides(max_hold_lifetime_seconds=600, payment_ttl_seconds=300,
                                                       max_payment_lifetime_seconds=900), clock)
    make_product(inv, "A", stock=5)
    return inv


def _record(inv: Inventory, reservation_id: str) -> dict[str, str]:
    token = reservation_id[2:]
    return inv.reservations.calls.read(inv.keys.of_token(token), token)


def test_an_extended_hold_outlives_its_first_expiry_in_every_index(shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 2}, ttl_seconds=60)
    ext = shop.reservations.extend(held.id, seconds=300, extension_id="e1", user_id="alice")
    assert (ext.kind, ext.extensions, ext.replayed) == ("hold", 1, False)
    assert int(ext.until.timestamp() * 1000) == clock.now_ms() + 300_000
    clock.advance(120)
    shop.reservations.expire_due()
    shop.reservations.reserve("bob", {"A": 3})  # lazy expiry inside reserve reclaims nothing of alice's
    assert shop.reservations.get(held.id).status is Status.HELD and stock(shop, "A").held == 5
    assert shop.reservations.checkout(held.id).status is Status.PENDING_PAYMENT
    assert shop.reservations.get(held.id).extensions == 1


def test_the_same_extension_id_is_applied_once(shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=60)
    first = shop.reservations.extend(held.id, seconds=200, extension_id="e1")
    clock.advance(10)
    again = shop.reservations.extend(held.id, seconds=200, extension_id="e1")
    assert again.replayed and again.until == first.until and again.extensions == 1


def test_an_extension_never_shortens(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=300)
    ext = shop.reservations.extend(held.id, seconds=10, extension_id="e1")
    assert ext.until == held.expires_at and ext.extensions == 0


def test_extending_past_the_cap_is_refused_and_changes_nothing(shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=60)
    before = _record(shop, held.id)
    with pytest.raises(ExtensionLimit) as refused:
        shop.reservations.extend(held.id, seconds=601, extension_id="e1")
    assert int(refused.value.details["max_until_ms"]) == clock.now_ms() + 600_000
    assert _record(shop, held.id) == before


def test_the_providers_extension_stops_at_the_cap(shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=60)
    cap = clock.now_ms() + 600_000
    shop.reservations.extend(held.id, seconds=550, extension_id="e0")
    clock.advance(500)
    ext = shop.reservations.extend(held.id, seconds=300, extension_id="e1", clamp=True)
    assert int(ext.until.timestamp() * 1000) == cap
    with pytest.raises(ExtensionLimit):
        shop.reservations.extend(held.id, seconds=300, extension_id="e2", clamp=True)


def test_an_expired_or_closed_reservation_cannot_be_extended(shop: Inventory, clock: ManualClock) -> None:
    expired = shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=10)
    released = shop.reservations.release(shop.reservations.reserve("bob", {"A": 1}).id)
    clock.advance(10)
    with pytest.raises(ReservationExpired):
        shop.reservations.extend(expired.id, seconds=60, extension_id="e1")
    assert stock(shop, "A").held == 0 and stock(shop, "A").available == 5  # expired there and then
    with pytest.raises(ReservationClosed):
        shop.reservations.extend(released.id, seconds=60, extension_id="e1")
    with pytest.raises(ReservationNotFound):
        shop.reservations.extend(expired.id, seconds=60, extension_id="e2", user_id="mallory")


def test_a_payment_deadline_extends_after_checkout_and_the_sweeper_respects_it(
        shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 2})
    order = shop.reservations.checkout(held.id)
    ext = shop.reservations.extend(held.id, seconds=600, extension_id="e1")
    assert ext.kind == "payment" and shop.reservations.get_order(order.id).payment_due_at == ext.until
    clock.advance(300)
    shop.reservations.expire_due()
    assert shop.reservations.get_order(order.id).status is Status.PENDING_PAYMENT
    with pytest.raises(ExtensionLimit):  # checkout + 900 s is the cap
        shop.reservations.extend(held.id, seconds=601, extension_id="e2")
    clock.advance(300)
    shop.reservations.expire_due()
    assert shop.reservations.get_order(order.id).status is Status.PAYMENT_EXPIRED
    assert stock(shop, "A").available == 5
    with pytest.raises(ReservationClosed):
        shop.reservations.extend(held.id, seconds=60, extension_id="e3")


def test_requires_action_from_the_provider_extends_once_per_event(shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=60)
    outcome = shop.reservations.record_payment(event_id="3ds-1", result="requires_action", reservation_id=held.id)
    assert outcome.status is Status.HELD and outcome.extended_until is not None
    assert int(outcome.extended_until.timestamp() * 1000) == clock.now_ms() + 600_000  # step 600 s = the cap
    replay = shop.reservations.record_payment(event_id="3ds-1", result="requires_action", reservation_id=held.id)
    assert replay.replayed and replay.extended_until == outcome.extended_until


def test_bad_extension_arguments_change_nothing(shop: Inventory) -> None:
    held = shop.reservations.reserve("alice", {"A": 1})
    before = _record(shop, held.id)
    for kwargs in ({"seconds": 0, "extension_id": "e"}, {"seconds": True, "extension_id": "e"},
                   {"seconds": 10, "extension_id": ""}, {"seconds": 10, "extension_id": "x" * 256}):
        with pytest.raises(InvalidArgument):
            shop.reservations.extend(held.id, **kwargs)
    with pytest.raises(ReservationNotFound):
        shop.reservations.extend("r_nothing", seconds=10, extension_id="e")
    assert _record(shop, held.id) == before


def test_a_basket_over_partitions_extends_every_part(any_redis, settings, clock) -> None:  # noqa: ANN001
    inv = Inventory(any_redis, settings.with_overrides(redis_partitions=8), clock)
    skus = skus_in_distinct_partitions(inv.keys, 3)
    for sku in skus:
        make_product(inv, sku, stock=3)
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus}, ttl_seconds=60)
    inv.reservations.extend(held.id, seconds=600, extension_id="e1")
    clock.advance(120)
    inv.reservations.expire_due()
    for sku in skus:
        inv.reservations.reserve(f"other-{sku}", {sku: 2})  # lazy expiry on each part's SKU reclaims nothing
    assert levels(inv, skus) == [(0, 3, 0)] * 3
    assert inv.reservations.checkout(held.id).status is Status.PENDING_PAYMENT
    for sku in skus:
        assert_invariant(stock(inv, sku))


def _part_expiry(inv: Inventory, reservation_id: str, sku: str) -> int:
    token = reservation_id[2:]
    return int(inv.reservations.calls.read(inv.keys.parts[inv.keys.partition_of(sku)], token)["exp"])


@pytest.mark.parametrize("clamp", [False, True], ids=["storefront", "provider"])
def test_a_part_added_late_never_outlives_the_reservations_cap(any_redis, settings, clock, clamp) -> None:  # noqa: ANN001
    """The home's cap decides for every part: a part added by amend (its own creation time later) follows
    the home's new expiry, and is not extended at all when the home refuses."""
    inv = Inventory(any_redis, settings.with_overrides(redis_partitions=8, max_hold_lifetime_seconds=600), clock)
    first, late = sorted(skus_in_distinct_partitions(inv.keys, 2))  # `first` sorts first: its partition is home
    for sku in (first, late):
        make_product(inv, sku, stock=3)
    held = inv.reservations.reserve("alice", {first: 1}, ttl_seconds=60)
    inv.reservations.extend(held.id, seconds=300, extension_id="e1")  # to 5 min after creation
    clock.advance(290)
    inv.reservations.amend(held.id, {late: 1})  # a new part, created now
    clock.advance(5)  # 295 s after creation; the cap is 600 s after creation
    cap_ms = int(held.created_at.timestamp() * 1000) + 600_000
    if clamp:
        ext = inv.reservations.extend(held.id, seconds=500, extension_id="e2", clamp=True)
        assert int(ext.until.timestamp() * 1000) == cap_ms
        assert _part_expiry(inv, held.id, late) == _part_expiry(inv, held.id, first) == cap_ms
    else:
        before = _part_expiry(inv, held.id, late)
        with pytest.raises(ExtensionLimit):
            inv.reservations.extend(held.id, seconds=500, extension_id="e2")
        assert _part_expiry(inv, held.id, late) == before
    clock.advance(601)
    inv.reservations.expire_due()
    assert levels(inv, [first, late]) == [(3, 0, 0)] * 2  # nothing held past the cap


def test_a_crash_after_the_home_leaves_parts_that_expire_first_and_a_retry_levels_them(
        any_redis, settings, clock, monkeypatch) -> None:  # noqa: ANN001
    inv = Inventory(any_redis, settings.with_overrides(redis_partitions=8), clock)
    skus = sorted(skus_in_distinct_partitions(inv.keys, 3))
    for sku in skus:
        make_product(inv, sku, stock=3)
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus}, ttl_seconds=60)
    real = inv.reservations.calls.extend

    def crash_at_the_parts(*args: Any, follow_ms: int = 0, **kwargs: Any) -> Any:
        if follow_ms:
            raise ConnectionError("process killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(inv.reservations.calls, "extend", crash_at_the_parts)
    with pytest.raises(ConnectionError):
        inv.reservations.extend(held.id, seconds=600, extension_id="e1")
    home_until = _part_expiry(inv, held.id, skus[0])
    assert [_part_expiry(inv, held.id, sku) < home_until for sku in skus[1:]] == [True, True]
    monkeypatch.setattr(inv.reservations.calls, "extend", real)
    again = inv.reservations.extend(held.id, seconds=600, extension_id="e1")  # the caller's retry
    assert again.replayed and [_part_expiry(inv, held.id, sku) for sku in skus] == [home_until] * 3
    clock.advance(120)
    inv.reservations.expire_due()
    assert inv.reservations.checkout(held.id).status is Status.PENDING_PAYMENT


def test_an_extended_record_outlives_its_hold_and_its_deadline_by_its_retention(
        any_redis: Any, settings: Settings, clock: ManualClock) -> None:
    """A retention shorter than the lifetime cap: the record's own TTL moves with every extension."""
    inv = Inventory(any_redis, settings.with_overrides(record_retention_seconds=5, max_hold_lifetime_seconds=600,
                                                       payment_ttl_seconds=10, max_payment_lifetime_seconds=900), clock)
    make_product(inv, "A", stock=5)
    held = inv.reservations.reserve("alice", {"A": 1}, ttl_seconds=10)
    assert 14_000 < record_ttl(inv, held.id) <= 15_000
    inv.reservations.extend(held.id, seconds=300, extension_id="x1")
    assert 304_000 < record_ttl(inv, held.id) <= 305_000  # 300 s of hold, then the 5 s retention
    order = inv.reservations.checkout(held.id)  # an order's record is kept for the order retention
    kept = record_ttl(inv, held.id)
    inv.reservations.extend(held.id, seconds=600, extension_id="x2")  # the payment deadline: 10 s -> 600 s
    assert 589_000 < record_ttl(inv, held.id) - kept <= 590_000
    assert inv.reservations.get_order(order.id).status is Status.PENDING_PAYMENT
