"""Waitlists: returned units go to waiting buyers first, in join order, exactly once (all backends)."""

from __future__ import annotations

from typing import Any

import pytest

from inventory import Inventory, Settings
from inventory.errors import (
    AlreadyWaiting, InvalidArgument, LimitExceeded, NotSoldOut, ProductNotFound, ReservationExpired,
    SaleNotActive, SoldOut, WaitlistEntryNotFound, WaitlistFull,
)
from inventory.holds import read_open_holds
from inventory.models import Status
from inventory.sale_admin import set_global_pause
from tests.clocks import ManualClock
from tests.helpers import assert_invariant, make_product, stock

CLAIM = 30


@pytest.fixture
def shop(any_redis: Any, settings: Settings, clock: ManualClock) -> Inventory:
    inv = Inventory(any_redis, settings.with_overrides(waitlist_claim_seconds=CLAIM, waitlist_ttl_seconds=1200,
                                                       waitlist_max_length=5), clock)
    make_product(inv, "A", stock=3, limit=2)
    return inv


def _sell_out(inv: Inventory) -> list[str]:
    """Three buyers hold one unit each (an hour)."""
    return [inv.reservations.reserve(f"holder-{n}", {"A": 1}, ttl_seconds=3600).id for n in range(3)]


def _check(inv: Inventory) -> tuple[int, int, int]:
    """Counters agree with the holds index (the waitlist's pool and offers included)."""
    level = stock(inv, "A")
    assert_invariant(level)
    holds = read_open_holds(inv.redis, inv.keys.sku("A"))
    assert sum(hold[1] for hold in holds) == level.held
    return level.available, level.held, level.sold


def test_a_returned_unit_is_offered_to_the_first_buyer_in_line_never_to_the_next_request(shop: Inventory) -> None:
    held = _sell_out(shop)
    for user in ("wendy", "walt"):
        assert shop.waitlists.join("A", user, 1).status == "waiting"
    assert shop.waitlists.get("A", "walt").position == 2
    shop.reservations.release(held[0])
    with pytest.raises(SoldOut) as refused:  # a bot's retry loop cannot take the returned unit
        shop.reservations.reserve("bot", {"A": 1})
    assert refused.value.details["waitlist_length"] == 2 and refused.value.details["waitlist_open"]
    wendy = shop.waitlists.get("A", "wendy")
    assert (wendy.status, wendy.units) == ("offered", 1)
    assert shop.waitlists.get("A", "walt").position == 1
    reservation = shop.waitlists.claim("A", "wendy")
    assert reservation.status is Status.HELD and reservation.user_id == "wendy"
    order = shop.reservations.checkout(reservation.id)
    shop.reservations.record_payment(event_id="p", result="paid", order_id=order.id)
    assert _check(shop) == (0, 2, 1)
    assert shop.waitlists.get("A", "wendy").status == "claimed"
    assert shop.waitlists.claim("A", "wendy").id == reservation.id  # claiming again: the same reservation


def test_an_unclaimed_offer_lapses_and_passes_to_the_next_buyer(shop: Inventory, clock: ManualClock) -> None:
    held = _sell_out(shop)
    shop.waitlists.join("A", "wendy", 1)
    shop.waitlists.join("A", "walt", 1)
    shop.reservations.release(held[0])
    assert shop.waitlists.get("A", "wendy").status == "offered"
    clock.advance(CLAIM)
    shop.sweep()
    with pytest.raises(WaitlistEntryNotFound):
        shop.waitlists.get("A", "wendy")  # lapsed and gone
    walt = shop.waitlists.get("A", "walt")
    assert walt.status == "offered" and _check(shop) == (0, 3, 0)
    with pytest.raises(WaitlistEntryNotFound):
        shop.waitlists.claim("A", "wendy")
    clock.advance(CLAIM)
    with pytest.raises(ReservationExpired):
        shop.waitlists.claim("A", "walt")
    shop.sweep()
    assert _check(shop) == (1, 2, 0)  # nobody waits any more: the unit is available again


@pytest.mark.parametrize("how", ["sweep_expiry", "lazy_expiry", "release", "failed_payment", "payment_deadline",
                                 "amend_shrink", "admin_add"])
def test_every_kind_of_return_goes_to_the_waitlist_first(shop: Inventory, clock: ManualClock, how: str) -> None:
    first = shop.reservations.reserve("holder", {"A": 2}, ttl_seconds=60)
    second = shop.reservations.reserve("other", {"A": 1}, ttl_seconds=600)
    order = shop.reservations.checkout(second.id) if how in ("failed_payment", "payment_deadline") else None
    shop.waitlists.join("A", "wendy", 1)
    if how == "sweep_expiry":
        clock.advance(60)
        shop.reservations.expire_due()
    elif how == "lazy_expiry":
        clock.advance(60)
        with pytest.raises(SoldOut):  # the reserve reclaims the hold, and the unit is set aside first
            shop.reservations.reserve("bot", {"A": 2})
    elif how == "release":
        shop.reservations.release(first.id)
    elif how == "failed_payment":
        shop.reservations.record_payment(event_id="f", result="failed", order_id=order.id)  # type: ignore[union-attr]
    elif how == "payment_deadline":
        clock.advance(shop.settings.payment_ttl_seconds)
        shop.reservations.expire_due()
    elif how == "amend_shrink":
        shop.reservations.amend(first.id, {"A": 1})
    else:
        shop.catalog.adjust_stock("A", add=1)
        with pytest.raises(SoldOut):
            shop.reservations.reserve("bot", {"A": 1})
    assert shop.waitlists.get("A", "wendy").status == "offered", how
    # the payment deadline (900 s) also outlives the 60 s hold: its 2 units come back with the order's 1
    returned = {"sweep_expiry": 2, "lazy_expiry": 2, "release": 2, "payment_deadline": 3}.get(how, 1)
    assert _check(shop)[0] == returned - 1  # one unit went to wendy; the rest is anyone's


def test_join_refuses_what_it_should_and_changes_nothing(shop: Inventory) -> None:
    with pytest.raises(NotSoldOut):
        shop.waitlists.join("A", "early", 1)
    _sell_out(shop)
    with pytest.raises(ProductNotFound):
        shop.waitlists.join("NOPE", "wendy", 1)
    for bad in ({"qty": 0}, {"qty": True}, {"qty": 10**7}):
        with pytest.raises(InvalidArgument):
            shop.waitlists.join("A", "wendy", **bad)
    with pytest.raises(InvalidArgument):
        shop.waitlists.join("A", "bad|user", 1)
    with pytest.raises(LimitExceeded):
        shop.waitlists.join("A", "wendy", 3)  # per-user limit 2
    assert shop.waitlists.summary("A").waiting == 0
    first = shop.waitlists.join("A", "wendy", 2)
    assert shop.waitlists.join("A", "wendy", 2).replayed and first.position == 1
    with pytest.raises(AlreadyWaiting):
        shop.waitlists.join("A", "wendy", 1)
    for n in range(4):
        shop.waitlists.join("A", f"w{n}", 1)
    with pytest.raises(WaitlistFull):
        shop.waitlists.join("A", "late", 1)
    summary = shop.waitlists.summary("A")
    assert (summary.waiting, summary.units_wanted, summary.units_set_aside) == (5, 6, 0)
    assert [e.user_id for e in summary.head] == ["wendy", "w0", "w1", "w2", "w3"]
    assert _check(shop) == (0, 3, 0)


def test_offers_keep_the_per_user_limit(shop: Inventory) -> None:
    held = _sell_out(shop)
    mine = shop.reservations.reserve  # wendy already holds one unit of a limit of 2
    shop.reservations.release(held[0])
    mine("wendy", {"A": 1})
    shop.waitlists.join("A", "wendy", 1)
    shop.reservations.release(held[1])
    shop.reservations.release(held[2])
    wendy = shop.waitlists.get("A", "wendy")
    assert (wendy.status, wendy.units) == ("offered", 1)  # 1 held + 1 offered = the limit
    assert _check(shop) == (1, 2, 0)


def test_a_bigger_wish_gets_a_partial_offer_rather_than_blocking_the_line(shop: Inventory) -> None:
    held = _sell_out(shop)
    shop.waitlists.join("A", "wendy", 2)
    shop.waitlists.join("A", "walt", 1)
    shop.reservations.release(held[0])
    assert (shop.waitlists.get("A", "wendy").units, shop.waitlists.get("A", "wendy").status) == (1, "offered")
    shop.reservations.release(held[1])
    assert shop.waitlists.get("A", "walt").status == "offered"


def test_leaving_while_offered_passes_the_units_on(shop: Inventory) -> None:
    held = _sell_out(shop)
    shop.waitlists.join("A", "wendy", 1)
    shop.waitlists.join("A", "walt", 1)
    assert shop.waitlists.leave("A", "walt") == "waiting"
    shop.waitlists.join("A", "walt", 1)
    shop.reservations.release(held[0])
    assert shop.waitlists.get("A", "wendy").status == "offered"
    assert shop.waitlists.leave("A", "wendy") == "offered"
    assert shop.waitlists.get("A", "walt").status == "offered"
    with pytest.raises(WaitlistEntryNotFound):
        shop.waitlists.leave("A", "wendy")
    assert _check(shop) == (0, 3, 0)


def test_pauses_hold_offers_back_and_claims_wait_for_the_sale(shop: Inventory) -> None:
    held = _sell_out(shop)
    shop.waitlists.join("A", "wendy", 1)
    shop.catalog.configure("A", paused=True)
    shop.reservations.release(held[0])
    assert shop.waitlists.get("A", "wendy").status == "waiting"  # set aside, not offered while paused
    assert _check(shop) == (0, 3, 0)
    shop.catalog.configure("A", paused=False)
    assert shop.waitlists.get("A", "wendy").status == "offered"
    set_global_pause(shop, True)
    with pytest.raises(SaleNotActive):
        shop.waitlists.claim("A", "wendy")
    with pytest.raises(SaleNotActive):
        shop.waitlists.join("A", "walt", 1)
    set_global_pause(shop, False)
    assert shop.waitlists.claim("A", "wendy").status is Status.HELD


def test_an_entry_expires_and_what_was_set_aside_for_it_goes_back(shop: Inventory, clock: ManualClock) -> None:
    held = _sell_out(shop)
    shop.waitlists.join("A", "wendy", 1)
    clock.advance(1200)
    shop.reservations.release(held[0])
    shop.sweep()
    with pytest.raises(WaitlistEntryNotFound):  # expired entries leave the queue
        shop.waitlists.get("A", "wendy")
    assert _check(shop) == (1, 2, 0)
    assert shop.redis.smembers(shop.keys.of_sku("A").waitlists) == set()  # the sweeper forgot the SKU
