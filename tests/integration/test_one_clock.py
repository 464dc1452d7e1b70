"""Issue 10, items 1, 2, 7, 8: one clock (Redis's), one truth per hold, recovering, script-level limits.

Each scenario is the probe's reproduction: a request whose arguments were built before another
host's request ran, host clocks that differ, an admin reopening a SKU mid-rebuild, and quantities
that only a direct script call could send.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
import redis

from inventory import Inventory, Settings
from inventory.buyers import read_buyers
from inventory.errors import InvalidArgument, LimitExceeded, ProductRecovering, ReservationExpired
from inventory.holds import read_open_holds
from inventory.models import Status
from inventory.validation import MAX_QTY
from tests.clocks import ManualClock
from tests.helpers import assert_invariant, make_product, stock


def before_next_script(inv: Inventory, other_request: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Let `other_request` run after `inv` has built its next script call's arguments, before it is sent."""
    scripts, original = inv.ctx.scripts, inv.ctx.scripts.call
    pending = [other_request]

    def call(name: str, keys: Any, args: Any, client: Any = None) -> Any:
        while pending:
            pending.pop()()
        return original(name, keys, args, client)

    monkeypatch.setattr(scripts, "call", call)


def second_host(inv: Inventory, clock: ManualClock) -> Inventory:
    """Another API process on the same Redis (own client objects and scripts, same clock)."""
    return Inventory(inv.redis, inv.settings, clock)


def buyers(inv: Inventory, sku: str) -> dict[str, int]:
    return read_buyers(inv.redis, inv.keys.sku(sku))


def sell_the_rest(inv: Inventory, sku: str) -> None:
    """Reserve and check out every unit left, one buyer per unit."""
    for n in range(stock(inv, sku).available):
        inv.reservations.checkout(inv.reservations.reserve(f"rest{n}", {sku: 1}).id)


def test_growing_a_hold_that_another_host_reclaimed_expires_it_and_never_oversells(
        inv: Inventory, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    make_product(inv, stock=10)
    bob_host = second_host(inv, clock)
    alice = inv.reservations.reserve("alice", {"HOT": 2}, ttl_seconds=60)
    clock.advance(60)  # T+60.000: Alice's hold is due; Bob's reserve on another host reclaims it
    before_next_script(inv, lambda: bob_host.reservations.reserve("bob", {"HOT": 1}), monkeypatch)
    with pytest.raises(ReservationExpired):
        inv.reservations.amend(alice.id, {"HOT": 3}, user_id="alice")
    monkeypatch.undo()
    level = stock(inv)
    assert (level.available, level.held, level.sold) == (9, 1, 0)
    assert inv.reservations.get(alice.id).status is Status.EXPIRED
    sell_the_rest(inv, "HOT")
    clock.advance(600)
    inv.reservations.expire_due()
    level = stock(inv)  # was total 10, sold 12, held -2 when the amend re-held a reclaimed hold
    assert (level.total, level.sold, level.held, level.available) == (10, 9, 0, 1)  # Bob's unit came back
    assert_invariant(level)


def test_shrinking_a_reclaimed_hold_does_not_return_its_stock_twice(
        inv: Inventory, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    make_product(inv, stock=10)
    alice = inv.reservations.reserve("alice", {"HOT": 3}, ttl_seconds=60)
    clock.advance(60)
    before_next_script(inv, lambda: second_host(inv, clock).reservations.reserve("bob", {"HOT": 1}), monkeypatch)
    with pytest.raises(ReservationExpired):
        inv.reservations.amend(alice.id, {"HOT": 1}, user_id="alice")
    level = stock(inv)
    assert (level.available, level.held) == (9, 1)  # was 'available 11' when stock came back twice
    assert_invariant(level)


def test_a_buyer_count_moves_only_with_the_hold_it_counts(
        inv: Inventory, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    make_product(inv, stock=10, limit=2)
    alice = inv.reservations.reserve("alice", {"HOT": 1}, ttl_seconds=60)
    clock.advance(60)
    before_next_script(inv, lambda: second_host(inv, clock).reservations.reserve("bob", {"HOT": 1}), monkeypatch)
    with pytest.raises(ReservationExpired):
        inv.reservations.amend(alice.id, {"HOT": 3}, user_id="alice")
    monkeypatch.undo()
    assert buyers(inv, "HOT") == {"bob": 1}
    inv.reservations.reserve("alice", {"HOT": 2})
    with pytest.raises(LimitExceeded):
        inv.reservations.reserve("alice", {"HOT": 1})
    assert buyers(inv, "HOT") == {"bob": 1, "alice": 2}


def test_a_hold_reclaimed_on_one_line_expires_the_whole_reservation_for_every_operation(
        inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "A", stock=5)
    make_product(inv, "B", stock=5)
    first = inv.reservations.reserve("alice", {"A": 1, "B": 1}, ttl_seconds=30)
    second = inv.reservations.reserve("carol", {"A": 2, "B": 2}, ttl_seconds=30)
    clock.advance(30)
    inv.reservations.reserve("bob", {"A": 1})  # reclaims both holds on A only
    assert inv.reservations.get(first.id).status is Status.EXPIRED
    with pytest.raises(ReservationExpired):
        inv.reservations.checkout(first.id)
    outcome = inv.reservations.record_payment(event_id="evt-late", result="paid", reservation_id=second.id)
    assert outcome.status is Status.REFUND_REQUIRED
    assert (stock(inv, "A").available, stock(inv, "B").available) == (4, 5)
    for sku in ("A", "B"):
        assert_invariant(stock(inv, sku))


def test_amend_with_lines_read_before_another_change_is_retried_on_fresh_lines(
        inv: Inventory, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    make_product(inv, "A", stock=5)
    make_product(inv, "B", stock=5)
    held = inv.reservations.reserve("alice", {"A": 1}, ttl_seconds=60)
    other_tab = second_host(inv, clock)
    before_next_script(inv, lambda: other_tab.reservations.amend(held.id, {"B": 2}), monkeypatch)
    amended = inv.reservations.amend(held.id, {"A": 3})
    assert {line.sku: line.qty for line in amended.lines} == {"A": 3, "B": 2}
    assert (stock(inv, "A").held, stock(inv, "B").held) == (3, 2)


def test_scripts_refuse_quantities_they_could_not_store_and_change_nothing(inv: Inventory) -> None:
    make_product(inv, stock=10)
    held = inv.reservations.reserve("alice", {"HOT": 1})
    keys = inv.ctx.keys
    part = keys.of_sku("HOT")  # HOT's partition: the one slot its scripts may touch
    fresh = keys.token_in("t" * 17, part.index)
    for qty in ("100000000000000", str(MAX_QTY + 1), "0", "-1", "1.5"):
        reply = inv.ctx.scripts.call("reserve", [part.reservation(fresh), part.expiries, part.dirty,
                                                 part.sale_switch, *inv.ctx.indexed_line_keys(["HOT"], fresh),
                                                 part.record_bucket(fresh)],
                                     [fresh, "bob", "fp", 60_000, 1000, 0, "", "", "HOT", qty])
        assert [reply[0], reply[1]] == [-11, b"qty"], qty
        token = held.id[2:]
        reply = inv.ctx.scripts.call("amend", [keys.reservation(token), part.expiries, part.dirty, part.sale_switch,
                                               *inv.ctx.indexed_line_keys(["HOT"], token), part.record_bucket(token)],
                                     [token, "", "", "HOT", qty])
        if qty != "0":
            assert [reply[0], reply[1]] == [-11, b"qty"], qty
    level = stock(inv)
    assert (level.available, level.held) == (9, 1)
    assert len(read_open_holds(inv.redis, keys.sku("HOT"))) == 1
    with pytest.raises(InvalidArgument):
        inv.reservations.reserve("bob", {"HOT": MAX_QTY + 1})


def test_the_scripts_maximum_is_the_documented_one() -> None:
    from inventory.scripts import load_sources
    assert f"local MAX_QTY = {MAX_QTY}\n" in load_sources()["reserve"].source


def test_a_recovering_sku_is_reopened_only_by_the_rebuild(inv: Inventory) -> None:
    make_product(inv, stock=10)
    inv.catalog.set_recovering("HOT", True)
    for change in ({"paused": False}, {"paused": True}):
        with pytest.raises(ProductRecovering):
            inv.catalog.configure("HOT", **change)
    inv.catalog.configure("HOT", price=900)  # other settings may still change
    assert inv.catalog.get("HOT").sale_state.value == "recovering"
    inv.catalog.set_recovering("HOT", False)
    assert inv.catalog.get("HOT").sale_state.value == "active"


# -- real redis-server with its real clock: no host clock decides anything -------------------------


@pytest.fixture
def wall_inv(real_redis: redis.Redis, settings: Settings) -> Inventory:
    """The core as production builds it: time from Redis's TIME."""
    return Inventory(real_redis, settings)


def skew_host_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make this process's clock run `seconds` ahead (or behind) of Redis's."""
    offset_ns = int(seconds * 1e9)
    real_ns, real_s = time.time_ns, time.time
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + offset_ns)
    monkeypatch.setattr(time, "time", lambda: real_s() + seconds)


def test_a_sweeper_whose_clock_runs_ahead_does_not_cut_a_hold_short(
        wall_inv: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    make_product(wall_inv, stock=5)
    held = wall_inv.reservations.reserve("alice", {"HOT": 2}, ttl_seconds=9)
    skew_host_clock(monkeypatch, 5)
    assert wall_inv.reservations.expire_due().expired == 0
    skew_host_clock(monkeypatch, 3600)
    assert wall_inv.reservations.expire_due().expired == 0
    assert wall_inv.reservations.checkout(held.id).status is Status.PENDING_PAYMENT


def test_a_host_whose_clock_runs_behind_cannot_extend_or_revive_a_hold(
        wall_inv: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    make_product(wall_inv, stock=5)
    skew_host_clock(monkeypatch, -3600)
    held = wall_inv.reservations.reserve("alice", {"HOT": 2}, ttl_seconds=1)
    redis_now = wall_inv.ctx.now_ms()
    assert abs(int(held.expires_at.timestamp() * 1000) - (redis_now + 1000)) < 1000
    deadline = time.monotonic() + 10
    while wall_inv.reservations.get(held.id).status is Status.HELD and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ReservationExpired):
        wall_inv.reservations.amend(held.id, {"HOT": 1})
    assert stock(wall_inv).available == 5


def test_a_sweep_skips_a_reservation_paid_between_listing_it_and_releasing_it(
        inv: Inventory, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    make_product(inv, stock=5)
    held = inv.reservations.reserve("alice", {"HOT": 2}, ttl_seconds=10)
    also_due = inv.reservations.reserve("bob", {"HOT": 1}, ttl_seconds=10)
    clock.advance(10)
    webhook_host = second_host(inv, clock)
    before_next_script(inv, lambda: webhook_host.reservations.record_payment(
        event_id="evt-1", result="paid", reservation_id=held.id), monkeypatch)
    swept = inv.reservations.expire_due()
    assert swept.expired == 1 and swept.units_returned == 1
    assert inv.reservations.get(held.id).status is Status.REFUND_REQUIRED
    assert inv.reservations.get(also_due.id).status is Status.EXPIRED
    assert stock(inv).available == 5
