"""Reservations whose lines live in several partitions (several cluster slots) behave as one:
all or nothing, and a process killed between two parts leaves only holds that expire by themselves."""

from __future__ import annotations

from typing import Any

import pytest

from inventory import Inventory, Settings
from inventory.errors import InvalidArgument, ReservationExpired, SoldOut, StaleRead
from inventory.models import Status
from inventory.multipart import CONVERGE_AFTER_MS
from inventory.part_calls import PIN_WINDOW_MS
from tests.clocks import ManualClock
from tests.helpers import assert_invariant, make_product, stock
from tests.unit.test_scripts import skus_in_distinct_partitions


class Crash(BaseException):
    """A process killed at this point (nothing after it runs, no except clause catches it)."""


@pytest.fixture
def shop(any_redis: Any, settings: Settings, clock: ManualClock) -> tuple[Inventory, list[str]]:
    """Three SKUs in three different partitions (A's is the home: the smallest SKU name)."""
    inv = Inventory(any_redis, settings.with_overrides(redis_partitions=8), clock)
    skus = skus_in_distinct_partitions(inv.keys, 3)
    for sku in skus:
        make_product(inv, sku, stock=3, price=100)
    return inv, skus


def levels(inv: Inventory, skus: list[str]) -> list[tuple[int, int, int]]:
    out = []
    for sku in skus:
        level = stock(inv, sku)
        assert_invariant(level)
        out.append((level.available, level.held, level.sold))
    return out


def crash_on(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, *, after: int) -> None:
    """Let `after` calls of target.name through, then kill the process at the next one."""
    original, seen = getattr(target, name), []

    def call(*args: Any, **kwargs: Any) -> Any:
        seen.append(1)
        if len(seen) > after:
            raise Crash
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, call)


def test_a_basket_over_three_partitions_sells_and_pays_as_one_order(shop) -> None:  # noqa: ANN001
    inv, skus = shop
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus})
    assert {line.sku for line in inv.reservations.get(held.id).lines} == set(skus)
    assert levels(inv, skus) == [(2, 1, 0)] * 3
    order = inv.reservations.checkout(held.id, user_id="alice")
    assert order.total == 300 and levels(inv, skus) == [(2, 0, 1)] * 3
    paid = inv.reservations.record_payment(event_id="pay-1", result="paid", order_id=order.id)
    assert paid.status is Status.PAID
    assert inv.reservations.get_order(order.id).status is Status.PAID
    assert [o.id for o in inv.reservations.list_orders("alice")] == [order.id]  # one order, not one per part
    assert inv.reservations.checkout(held.id).replayed


def test_a_part_that_is_sold_out_releases_the_parts_already_taken(shop) -> None:  # noqa: ANN001
    inv, skus = shop
    inv.reservations.reserve("bob", {skus[2]: 3})
    with pytest.raises(SoldOut):
        inv.reservations.reserve("alice", {skus[0]: 1, skus[1]: 2, skus[2]: 1})
    assert levels(inv, skus) == [(3, 0, 0), (3, 0, 0), (0, 3, 0)]


def test_a_reserve_killed_between_parts_leaves_holds_that_expire_by_themselves(shop, clock, monkeypatch) -> None:  # noqa: ANN001
    inv, skus = shop
    crash_on(monkeypatch, inv.reservations.calls, "reserve", after=1)
    with pytest.raises(Crash):
        inv.reservations.reserve("alice", {sku: 1 for sku in skus}, ttl_seconds=30)
    monkeypatch.undo()
    assert sum(held for _, held, _ in levels(inv, skus)) == 1  # one part taken, no home: nobody can check it out
    clock.advance(31)
    inv.reservations.expire_due()
    assert levels(inv, skus) == [(3, 0, 0)] * 3


def test_a_keyed_reserve_retried_after_a_crash_converges_to_one_reservation(shop, monkeypatch) -> None:  # noqa: ANN001
    inv, skus = shop
    crash_on(monkeypatch, inv.reservations.calls, "reserve", after=2)
    with pytest.raises(Crash):
        inv.reservations.reserve("alice", {sku: 1 for sku in skus}, idempotency_key="k1")
    monkeypatch.undo()
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus}, idempotency_key="k1")
    again = inv.reservations.reserve("alice", {sku: 1 for sku in skus}, idempotency_key="k1")
    assert again.replayed and again.id == held.id
    assert levels(inv, skus) == [(2, 1, 0)] * 3


def test_a_checkout_killed_after_the_home_decided_is_finished_by_the_sweeper(shop, clock, monkeypatch) -> None:  # noqa: ANN001
    inv, skus = shop
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus}, ttl_seconds=30)
    crash_on(monkeypatch, inv.reservations.multi, "converge", after=0)
    with pytest.raises(Crash):
        inv.reservations.checkout(held.id)
    monkeypatch.undo()
    assert levels(inv, skus)[0] == (2, 0, 1)  # the home sold; the other parts are pinned holds
    clock.advance(120)  # far past the hold's expiry: pinned parts must not go back
    inv.reservations.expire_due()
    assert levels(inv, skus) == [(2, 0, 1)] * 3
    assert inv.reservations.get_order(f"o_{held.id[2:]}").status is Status.PENDING_PAYMENT


def test_a_checkout_killed_before_the_home_decided_gives_the_stock_back(shop, clock, monkeypatch) -> None:  # noqa: ANN001
    inv, skus = shop
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus}, ttl_seconds=60)
    crash_on(monkeypatch, inv.reservations.calls, "checkout", after=0)
    with pytest.raises(Crash):
        inv.reservations.checkout(held.id)
    monkeypatch.undo()
    clock.advance(PIN_WINDOW_MS / 1000 + 1)
    inv.reservations.expire_due()  # pins past their window, home undecided: abort there, unpin
    with pytest.raises(StaleRead):  # the attempt that pinned them can no longer commit...
        inv.reservations.multi.calls.checkout(inv.keys.of_token(held.id[2:]), held.id[2:], "", "o_x", "", "0")
    order = inv.reservations.checkout(held.id)  # ...but a new checkout can, while the hold lasts
    assert order.status is Status.PENDING_PAYMENT and levels(inv, skus) == [(2, 0, 1)] * 3


def test_a_stalled_checkout_past_the_holds_expiry_expires_everything(shop, clock, monkeypatch) -> None:  # noqa: ANN001
    inv, skus = shop
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus}, ttl_seconds=10)
    crash_on(monkeypatch, inv.reservations.calls, "checkout", after=0)
    with pytest.raises(Crash):
        inv.reservations.checkout(held.id)
    monkeypatch.undo()
    clock.advance(PIN_WINDOW_MS / 1000 + 1)
    inv.reservations.expire_due()
    assert levels(inv, skus) == [(3, 0, 0)] * 3
    with pytest.raises(ReservationExpired):
        inv.reservations.checkout(held.id)


def test_a_failed_payment_returns_every_parts_stock_once(shop) -> None:  # noqa: ANN001
    inv, skus = shop
    order = inv.reservations.checkout(inv.reservations.reserve("alice", {sku: 1 for sku in skus}).id)
    for _ in range(2):
        outcome = inv.reservations.record_payment(event_id="f-1", result="failed", order_id=order.id)
    assert outcome.status is Status.PAYMENT_FAILED and levels(inv, skus) == [(3, 0, 0)] * 3
    late = inv.reservations.record_payment(event_id="p-1", result="paid", order_id=order.id)
    assert late.status is Status.REFUND_REQUIRED and levels(inv, skus) == [(3, 0, 0)] * 3


def test_paid_before_checkout_checks_out_every_part(shop) -> None:  # noqa: ANN001
    inv, skus = shop
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus})
    outcome = inv.reservations.record_payment(event_id="p-1", result="paid", reservation_id=held.id)
    assert outcome.status is Status.PAID and levels(inv, skus) == [(2, 0, 1)] * 3


def test_a_payment_killed_after_the_home_is_finished_by_the_sweeper(shop, clock, monkeypatch) -> None:  # noqa: ANN001
    inv, skus = shop
    order = inv.reservations.checkout(inv.reservations.reserve("alice", {sku: 1 for sku in skus}).id)
    crash_on(monkeypatch, inv.reservations.multi, "converge", after=0)
    with pytest.raises(Crash):
        inv.reservations.record_payment(event_id="f-1", result="failed", order_id=order.id)
    monkeypatch.undo()
    assert levels(inv, skus)[0] == (3, 0, 0) and levels(inv, skus)[1] == (2, 0, 1)
    clock.advance(CONVERGE_AFTER_MS / 1000 + 1)
    inv.reservations.expire_due()
    assert levels(inv, skus) == [(3, 0, 0)] * 3


def test_a_release_killed_after_the_home_is_finished_by_the_sweeper(shop, clock, monkeypatch) -> None:  # noqa: ANN001
    inv, skus = shop
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus}, ttl_seconds=600)
    crash_on(monkeypatch, inv.reservations.multi, "converge", after=0)
    with pytest.raises(Crash):
        inv.reservations.release(held.id, user_id="alice")
    monkeypatch.undo()
    clock.advance(CONVERGE_AFTER_MS / 1000 + 1)
    inv.reservations.expire_due()
    assert levels(inv, skus) == [(3, 0, 0)] * 3
    assert inv.reservations.get(held.id).status is Status.RELEASED


def test_an_amend_refused_in_one_partition_undoes_the_others(shop) -> None:  # noqa: ANN001
    inv, skus = shop
    inv.reservations.reserve("bob", {skus[2]: 3})
    held = inv.reservations.reserve("alice", {skus[0]: 1, skus[1]: 1})
    with pytest.raises(SoldOut):
        inv.reservations.amend(held.id, {skus[0]: 2, skus[1]: 3, skus[2]: 1}, user_id="alice")
    assert levels(inv, skus) == [(2, 1, 0), (2, 1, 0), (0, 3, 0)]
    amended = inv.reservations.amend(held.id, {skus[0]: 2, skus[1]: 0}, user_id="alice")  # a part emptied
    assert {(line.sku, line.qty) for line in amended.lines} == {(skus[0], 2)}
    assert levels(inv, skus)[:2] == [(1, 2, 0), (3, 0, 0)]
    assert inv.reservations.checkout(held.id).total == 200


def test_a_single_part_reservation_grows_into_another_partition(shop) -> None:  # noqa: ANN001
    inv, skus = shop
    held = inv.reservations.reserve("alice", {skus[0]: 1})
    amended = inv.reservations.amend(held.id, {skus[2]: 2}, user_id="alice")
    assert {(line.sku, line.qty) for line in amended.lines} == {(skus[0], 1), (skus[2], 2)}
    order = inv.reservations.checkout(held.id)
    assert order.total == 300 and levels(inv, skus) == [(2, 0, 1), (3, 0, 0), (1, 0, 2)]


def test_every_part_expires_with_its_home(shop, clock) -> None:  # noqa: ANN001
    inv, skus = shop
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus}, ttl_seconds=5)
    clock.advance(6)
    assert inv.reservations.get(held.id).status is Status.EXPIRED
    inv.reservations.expire_due()
    assert levels(inv, skus) == [(3, 0, 0)] * 3
    with pytest.raises(ReservationExpired):
        inv.reservations.checkout(held.id)


def test_the_home_may_give_up_its_own_lines_while_other_parts_remain(shop) -> None:  # noqa: ANN001
    inv, skus = shop
    held = inv.reservations.reserve("alice", {skus[0]: 1})
    inv.reservations.amend(held.id, {skus[1]: 2}, user_id="alice")
    amended = inv.reservations.amend(held.id, {skus[0]: 0}, user_id="alice")
    assert [(line.sku, line.qty) for line in amended.lines] == [(skus[1], 2)]
    order = inv.reservations.checkout(held.id)
    assert order.total == 200 and levels(inv, skus)[:2] == [(3, 0, 0), (1, 0, 2)]
    inv.reservations.record_payment(event_id="f", result="failed", order_id=order.id)
    assert levels(inv, skus)[:2] == [(3, 0, 0), (3, 0, 0)]


def test_a_second_checkout_that_lost_the_race_answers_with_the_first_ones_order(shop) -> None:  # noqa: ANN001
    inv, skus = shop
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus})
    token = held.id[2:]
    stale = inv.reservations.calls.read(inv.keys.of_token(token), token)  # read before the first checkout ran
    order = inv.reservations.checkout(held.id)
    reply = inv.reservations.multi.checkout(token, stale, "alice", order.id, "")  # its pins find parts sold
    assert int(reply[0]) == 1 and reply[1] == order.id.encode()
    assert levels(inv, skus) == [(2, 0, 1)] * 3


def _pinned_by_a_killed_checkout(inv: Inventory, skus: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """A basket over every SKU whose checkout pinned the other parts, then died before the home decided."""
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus}, ttl_seconds=600)
    crash_on(monkeypatch, inv.reservations.calls, "checkout", after=0)
    with pytest.raises(Crash):
        inv.reservations.checkout(held.id)
    monkeypatch.undo()
    return held


def test_a_pinned_part_of_a_released_reservation_goes_back_at_its_pin_window(shop, clock, monkeypatch) -> None:  # noqa: ANN001
    inv, skus = shop
    held = _pinned_by_a_killed_checkout(inv, skus, monkeypatch)
    crash_on(monkeypatch, inv.reservations.multi, "converge", after=0)
    with pytest.raises(Crash):  # the home released, then the process died before the parts followed
        inv.reservations.release(held.id)
    monkeypatch.undo()
    clock.advance(PIN_WINDOW_MS / 1000 + 1)  # long before the hold's own expiry
    inv.reservations.expire_due()
    assert levels(inv, skus) == [(3, 0, 0)] * 3


def test_an_amend_that_would_remove_every_line_is_refused_before_any_part_changes(shop) -> None:  # noqa: ANN001
    inv, skus = shop
    held = inv.reservations.reserve("alice", {sku: 1 for sku in skus})
    with pytest.raises(InvalidArgument) as refused:
        inv.reservations.amend(held.id, {sku: 0 for sku in skus}, user_id="alice")
    assert refused.value.details["argument"] == "empty"
    assert levels(inv, skus) == [(2, 1, 0)] * 3
    assert {(line.sku, line.qty) for line in inv.reservations.get(held.id).lines} == {(sku, 1) for sku in skus}
    assert inv.reservations.checkout(held.id).total == 300  # every part still attached


def test_a_pinned_part_detached_by_a_killed_amend_goes_back_at_its_pin_window(shop, clock, monkeypatch) -> None:  # noqa: ANN001
    """Found by the baskets state machine: the part was pinned (its hold never expires) and no longer
    listed by its home, so nothing ever took it back."""
    inv, skus = shop
    held = _pinned_by_a_killed_checkout(inv, skus, monkeypatch)
    crash_on(monkeypatch, inv.reservations.calls, "release", after=0)
    with pytest.raises(Crash):  # the emptied part detached from its home, then the process died
        inv.reservations.amend(held.id, {skus[2]: 0}, user_id="alice")
    monkeypatch.undo()
    clock.advance(PIN_WINDOW_MS / 1000 + 1)  # long before the hold's own expiry
    inv.reservations.expire_due()
    assert levels(inv, skus) == [(2, 1, 0), (2, 1, 0), (3, 0, 0)]
    assert inv.reservations.checkout(held.id).total == 200
