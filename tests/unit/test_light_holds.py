"""Light holds: a SKU with few holds keeps them in its stock hash, a busy one in its holds zset
(lua/includes/common.lua, hold_put and the helpers after it); every path sees one set of holds."""

from __future__ import annotations

import pytest

from inventory import Inventory
from inventory.context import decode_hash
from inventory.errors import SoldOut
from inventory.holds import BOUND_FIELD, HOLD_PREFIX, IN_ZSET, MODE_FIELD, owner_of, read_open_holds
from inventory.models import Status
from tests.clocks import ManualClock
from tests.helpers import assert_holds_listed, assert_invariant, make_product, stock

LIGHT_HOLDS = 16


def fields(inv: Inventory, sku: str) -> dict[str, str]:
    return decode_hash(inv.redis.hgetall(inv.keys.sku(sku).stock))


def light(inv: Inventory, sku: str) -> dict[str, str]:
    return {k[len(HOLD_PREFIX):]: v for k, v in fields(inv, sku).items() if k.startswith(HOLD_PREFIX)}


def token(reservation_id: str) -> str:
    return reservation_id[2:]


def test_a_sku_with_one_hold_keeps_it_in_its_stock_hash_and_no_holds_key(inv: Inventory) -> None:
    make_product(inv, "L", stock=5)
    held = inv.reservations.reserve("ann", {"L": 2}, ttl_seconds=60)
    assert inv.redis.exists(inv.keys.sku("L").holds) == 0
    assert light(inv, "L") == {token(held.id): f"{int(held.expires_at.timestamp() * 1000)}|2|~ann"}  # carries its units
    assert fields(inv, "L")[MODE_FIELD] == "1" and int(fields(inv, "L")[BOUND_FIELD]) <= held.expires_at.timestamp() * 1000
    assert [(h.reservation_id, h.user_id, h.qty) for h in inv.catalog.holds("L")] == [(held.id, "ann", 2)]
    assert inv.catalog.get("L").stock.held == 2
    inv.reservations.release(held.id)
    assert not light(inv, "L") and MODE_FIELD not in fields(inv, "L") and BOUND_FIELD not in fields(inv, "L")
    assert (stock(inv, "L").available, stock(inv, "L").held) == (5, 0)


def test_light_holds_expire_by_lazy_expiry_and_by_the_sweeper(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "L", stock=3)
    short = inv.reservations.reserve("ann", {"L": 1}, ttl_seconds=5)
    long = inv.reservations.reserve("bob", {"L": 1}, ttl_seconds=50)
    inv.reservations.reserve("cid", {"L": 1}, ttl_seconds=500)
    with pytest.raises(SoldOut) as refused:
        inv.reservations.reserve("dan", {"L": 1})
    assert 0 < refused.value.true_for_ms <= 5000  # type: ignore[attr-defined] # until the first light hold expires
    clock.advance(6)
    assert inv.reservations.reserve("dan", {"L": 1}).status is Status.HELD  # ann's unit came back lazily
    assert inv.reservations.get(short.id).status is Status.EXPIRED
    clock.advance(50)
    assert inv.reservations.expire_due().expired >= 1  # the sweeper gives bob's back
    assert token(long.id) not in light(inv, "L")
    assert_holds_listed(inv, ["L"])
    assert_invariant(stock(inv, "L"))
    assert stock(inv, "L").held == 2


def test_the_seventeenth_hold_moves_every_hold_to_the_zset_for_good(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "H", stock=100)
    first = [inv.reservations.reserve(f"u{i:02d}", {"H": 1}, ttl_seconds=10 + i) for i in range(LIGHT_HOLDS)]
    assert fields(inv, "H")[MODE_FIELD] == str(LIGHT_HOLDS) and inv.redis.exists(inv.keys.sku("H").holds) == 0
    inv.reservations.reserve("late", {"H": 2}, ttl_seconds=1000)
    assert fields(inv, "H")[MODE_FIELD] == IN_ZSET and not light(inv, "H") and BOUND_FIELD not in fields(inv, "H")
    holds = read_open_holds(inv.redis, inv.keys.sku("H"))
    assert inv.redis.zcard(inv.keys.sku("H").holds) == LIGHT_HOLDS + 1 == len(holds)
    assert sorted(h[0] for h in holds) == sorted([token(r.id) for r in first] + [holds[-1][0]])
    for reservation in first[:8]:
        inv.reservations.release(reservation.id)
    clock.advance(30)
    inv.reservations.expire_due()
    inv.reservations.reserve("new", {"H": 1})  # in the zset for good
    assert not light(inv, "H") and stock(inv, "H").held == 2 + 1
    assert_invariant(stock(inv, "H"))


def test_checkout_payment_extension_and_amend_work_on_a_light_hold(inv: Inventory) -> None:
    make_product(inv, "L", stock=10)
    make_product(inv, "M", stock=10)
    held = inv.reservations.reserve("ann", {"L": 1}, ttl_seconds=60)
    held = inv.reservations.amend(held.id, {"L": 3}, user_id="ann")
    assert [v.split("|")[1] for v in light(inv, "L").values()] == ["3"]
    extended = inv.reservations.extend(held.id, seconds=120, extension_id="x1")
    assert light(inv, "L")[token(held.id)].startswith(f"{int(extended.until.timestamp() * 1000)}|3|")
    order = inv.reservations.checkout(held.id)
    assert not light(inv, "L") and stock(inv, "L").sold == 3
    inv.reservations.record_payment(event_id="p1", result="failed", order_id=order.id)
    assert (stock(inv, "L").available, stock(inv, "L").sold) == (10, 0)
    basket = inv.reservations.reserve("bob", {"L": 1, "M": 2})  # one hold on each of two light SKUs
    inv.reservations.record_payment(event_id="p2", result="paid", reservation_id=basket.id)
    assert not light(inv, "L") and not light(inv, "M")
    assert (stock(inv, "L").sold, stock(inv, "M").sold) == (1, 2)


def test_a_waitlist_pool_moves_the_holds_to_the_zset(inv: Inventory) -> None:
    make_product(inv, "W", stock=2)
    a = inv.reservations.reserve("ann", {"W": 1})
    inv.reservations.reserve("bob", {"W": 1})
    assert inv.waitlists.join("W", "wendy", 1).status == "waiting"
    inv.reservations.release(a.id)  # set aside for wendy: the pool lives in the zset, so every hold does
    assert fields(inv, "W")[MODE_FIELD] == IN_ZSET and not light(inv, "W")
    assert inv.waitlists.get("W", "wendy").status == "offered"
    assert sum(h[1] for h in read_open_holds(inv.redis, inv.keys.sku("W"))) == stock(inv, "W").held == 2
    assert_invariant(stock(inv, "W"))


def test_long_user_ids_and_skus_counted_by_the_older_version_use_the_zset(inv: Inventory) -> None:
    make_product(inv, "L", stock=5)
    inv.reservations.reserve("x" * 50, {"L": 1})  # '<expiry>|1|' + 50 characters: over 64 bytes
    assert fields(inv, "L")[MODE_FIELD] == IN_ZSET and inv.redis.zcard(inv.keys.sku("L").holds) == 1
    make_product(inv, "OLD", stock=5)
    keys = inv.keys.sku("OLD")
    old = inv.reservations.reserve("ann", {"OLD": 1})
    value = light(inv, "OLD")[token(old.id)]
    expires, qty, part = value.split("|", 2)  # write it as the version before light holds did
    user, _ = owner_of(part)
    inv.redis.hdel(keys.stock, f"{HOLD_PREFIX}{token(old.id)}", MODE_FIELD, BOUND_FIELD)
    inv.redis.zadd(keys.holds, {f"{token(old.id)}|{qty}|{user}": int(expires)})
    inv.reservations.reserve("bob", {"OLD": 1})
    assert fields(inv, "OLD")[MODE_FIELD] == IN_ZSET and inv.redis.zcard(keys.holds) == 2
    inv.reservations.release(old.id)
    assert [h[2] for h in read_open_holds(inv.redis, keys)] == ["bob"]
    assert_invariant(stock(inv, "OLD"))
