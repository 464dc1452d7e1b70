"""Hold buckets: a busy SKU's reservations hold in small per-token hashes listed in its holds zset
(lua/includes/common.lua, hold_put and the helpers after it); every path sees one set of holds."""

from __future__ import annotations

import pytest

from inventory import Inventory
from inventory.context import decode_hash, text
from inventory.errors import SoldOut
from inventory.holds import BUCKETED_FIELD, HOLD_PREFIX, IN_ZSET, MODE_FIELD, bucket_numbers, read_open_holds
from inventory.keys import HOLD_BUCKET, HOLD_BUCKETS
from inventory.models import Status
from inventory.sale_status import read_status
from tests.clocks import ManualClock
from tests.helpers import assert_holds_listed, assert_invariant, make_product, stock

LIGHT_HOLDS = 16


def token(reservation_id: str) -> str:
    return reservation_id[2:]


def bucket_holds(inv: Inventory, sku: str) -> dict[int, dict[str, str]]:
    """Every hold bucket of a SKU that exists: number -> its fields."""
    keys = inv.keys.sku(sku)
    pipe = inv.redis.pipeline(transaction=False)
    for number in range(HOLD_BUCKETS):
        pipe.hgetall(keys.hold_bucket(number))
    return {n: decode_hash(raw) for n, raw in enumerate(pipe.execute()) if raw}


def assert_buckets_consistent(inv: Inventory, sku: str) -> None:
    """Each bucket holds nothing but holds, is listed in the holds zset no later than its earliest while
    it holds any, and 'hk' keeps ZCARD + hk equal to the number of holds."""
    keys = inv.keys.sku(sku)
    listed = {int(text(m)[len(HOLD_BUCKET):]): s for m, s in inv.redis.zrange(keys.holds, 0, -1, withscores=True)
              if text(m).startswith(HOLD_BUCKET)}
    buckets = bucket_holds(inv, sku)
    assert set(listed) == set(buckets)
    for number, fields in buckets.items():
        assert fields and all(k.startswith(HOLD_PREFIX) for k in fields)
        assert listed[number] <= min(float(v.split("|")[0]) for v in fields.values())
    stock_fields = decode_hash(inv.redis.hgetall(keys.stock))
    in_buckets = sum(len(f) for f in buckets.values())
    assert int(stock_fields.get(BUCKETED_FIELD, 0)) == in_buckets - len(buckets)
    assert inv.redis.zcard(keys.holds) + int(stock_fields.get(BUCKETED_FIELD, 0)) == len(
        read_open_holds(inv.redis, keys))


def fill(inv: Inventory, sku: str, users: int, ttl: int = 60, qty: int = 1) -> list:
    return [inv.reservations.reserve(f"user-{i:03d}", {sku: qty}, ttl_seconds=ttl) for i in range(users)]


def test_a_busy_skus_reservations_hold_in_the_bucket_their_token_picks(inv: Inventory) -> None:
    make_product(inv, "B", stock=200)
    held = fill(inv, "B", 60)
    keys = inv.keys.sku("B")
    assert decode_hash(inv.redis.hgetall(keys.stock))[MODE_FIELD] == IN_ZSET
    for reservation in held[LIGHT_HOLDS + 1:]:  # after the 17th, each in its token's bucket
        bucket = decode_hash(inv.redis.hgetall(keys.bucket_of(token(reservation.id))))
        assert bucket[HOLD_PREFIX + token(reservation.id)].endswith(f"|1|{reservation.user_id}")
    assert sorted(h[0] for h in read_open_holds(inv.redis, keys)) == sorted(token(r.id) for r in held)
    assert len(inv.catalog.holds("B", limit=100)) == 60
    soonest = sorted(r.expires_at for r in held)[:5]
    assert [h.expires_at for h in inv.catalog.holds("B", limit=5)] == soonest
    (status,) = read_status(inv, ["B"])
    assert status.open_holds == 60
    assert_buckets_consistent(inv, "B")
    assert_holds_listed(inv, ["B"])
    assert_invariant(stock(inv, "B"))


def test_checkout_payment_release_extension_and_amend_work_on_bucket_holds(inv: Inventory) -> None:
    make_product(inv, "B", stock=200, limit=5)
    held = fill(inv, "B", 40, qty=2)
    keys = inv.keys.sku("B")
    a, b, c, d = held[-4:]
    order = inv.reservations.checkout(a.id)
    inv.reservations.record_payment(event_id="evt-a", result="paid", order_id=order.id)
    inv.reservations.release(b.id)
    extended = inv.reservations.extend(c.id, seconds=120, extension_id="ext-1")
    assert decode_hash(inv.redis.hgetall(keys.bucket_of(token(c.id))))[HOLD_PREFIX + token(c.id)].startswith(
        f"{int(extended.until.timestamp() * 1000)}|2|")
    inv.reservations.amend(d.id, {"B": 5})
    with pytest.raises(Exception):
        inv.reservations.amend(d.id, {"B": 6})  # over the per-user limit of 5
    assert inv.reservations.get(d.id).lines[0].qty == 5
    assert HOLD_PREFIX + token(a.id) not in decode_hash(inv.redis.hgetall(keys.bucket_of(token(a.id))))
    assert {h[0] for h in read_open_holds(inv.redis, keys)} == {token(r.id) for r in held} - {token(a.id), token(b.id)}
    s = stock(inv, "B")
    assert (s.sold, s.held) == (2, 2 * 37 + 5)
    assert_buckets_consistent(inv, "B")
    assert_invariant(s)
    for reservation in held:
        if reservation not in (a, b):
            inv.reservations.release(reservation.id)
    assert not bucket_holds(inv, "B") and not bucket_numbers(inv.redis.zrange(keys.holds, 0, -1))
    assert int(decode_hash(inv.redis.hgetall(keys.stock)).get(BUCKETED_FIELD, 0)) == 0
    assert (stock(inv, "B").available, stock(inv, "B").held) == (198, 0)


def test_expired_bucket_holds_come_back_to_the_next_buyer_without_a_sweeper(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "B", stock=50)
    for reservation in fill(inv, "B", LIGHT_HOLDS + 1):  # busy for good: every later hold in a bucket
        inv.reservations.release(reservation.id)
    fill(inv, "B", 50, ttl=10)
    with pytest.raises(SoldOut) as refused:
        inv.reservations.reserve("late", {"B": 1})
    assert 0 < refused.value.true_for_ms <= 10_000  # type: ignore[attr-defined]
    assert "due_bucket" not in refused.value.details
    clock.advance(11)
    # the new token's own bucket holds at most a few of the 50: the others come back because the
    # refused call named a due bucket and the caller swept the SKU before trying again
    late = inv.reservations.reserve("late", {"B": 3})
    assert late.status is Status.HELD
    s = stock(inv, "B")
    assert (s.available, s.held) == (47, 3)
    assert_buckets_consistent(inv, "B")
    assert_invariant(s)


def test_the_sweeper_empties_every_due_bucket(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "B", stock=300)
    held = fill(inv, "B", 200, ttl=10)
    keep = inv.reservations.reserve("keeper", {"B": 4}, ttl_seconds=600)
    clock.advance(11)
    result = inv.reservations.expire_due(batch_size=50)
    assert (result.expired, result.units_returned) == (200, 200)
    assert {h[0] for h in read_open_holds(inv.redis, inv.keys.sku("B"))} == {token(keep.id)}
    assert inv.reservations.get(held[-1].id).status is Status.EXPIRED
    assert_buckets_consistent(inv, "B")
    assert_holds_listed(inv, ["B"])
    s = stock(inv, "B")
    assert (s.available, s.held) == (296, 4)


def test_a_hold_taken_before_the_buckets_is_still_found(inv: Inventory) -> None:
    """A busy SKU's holds from before the buckets are zset members; every path still finds them."""
    make_product(inv, "OLD", stock=100)
    held = fill(inv, "OLD", LIGHT_HOLDS + 3)
    keys = inv.keys.sku("OLD")
    light_moved = [m for m in map(text, inv.redis.zrange(keys.holds, 0, -1)) if not m.startswith(HOLD_BUCKET)]
    assert len(light_moved) == LIGHT_HOLDS  # moved out of the stock hash at the 17th: plain members
    inv.reservations.checkout(held[0].id)
    inv.reservations.release(held[1].id)
    inv.reservations.release(held[-1].id)  # one in a bucket
    assert len(read_open_holds(inv.redis, keys)) == LIGHT_HOLDS + 3 - 3
    assert_buckets_consistent(inv, "OLD")
    assert_invariant(stock(inv, "OLD"))


def test_an_amend_refused_while_other_buckets_have_holds_due_sweeps_and_grows(inv: Inventory,
                                                                             clock: ManualClock) -> None:
    make_product(inv, "B", stock=40)
    for reservation in fill(inv, "B", LIGHT_HOLDS + 1):
        inv.reservations.release(reservation.id)
    mine = inv.reservations.reserve("me", {"B": 1}, ttl_seconds=600)
    fill(inv, "B", 39, ttl=10)
    clock.advance(11)
    inv.reservations.amend(mine.id, {"B": 4})
    assert inv.reservations.get(mine.id).lines[0].qty == 4
    s = stock(inv, "B")
    assert (s.available, s.held) == (36, 4)
    assert_buckets_consistent(inv, "B")
    assert_invariant(s)
