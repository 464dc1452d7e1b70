"""Light buyers: a SKU with few buyers counts their units in its stock hash, a busy one in its buyers
hash (lua/includes/common.lua, add_buyer_units), and a light hold carries its own units in neither;
limits hold the same every way, through the moves."""

from __future__ import annotations

import base64
import uuid

import pytest

from inventory import Inventory
from inventory.buyers import HEAVY, LIGHT_PREFIX, MODE_FIELD, read_buyers
from inventory.context import decode_hash
from inventory.errors import LimitExceeded
from inventory.holds import HOLD_PREFIX
from tests.clocks import ManualClock
from tests.helpers import assert_invariant, make_product, stock

LIGHT_BUYERS = 16


def stock_fields(inv: Inventory, sku: str) -> dict[str, str]:
    return decode_hash(inv.redis.hgetall(inv.keys.sku(sku).stock))


def light_fields(inv: Inventory, sku: str) -> dict[str, int]:
    return {k[len(LIGHT_PREFIX):]: int(v) for k, v in stock_fields(inv, sku).items() if k.startswith(LIGHT_PREFIX)}


def test_a_few_buyers_are_counted_in_the_stock_hash_and_the_limit_holds(inv: Inventory) -> None:
    make_product(inv, "L", stock=20, limit=2)
    first = inv.reservations.reserve("ann", {"L": 1})
    inv.reservations.reserve("ann", {"L": 1})
    inv.reservations.reserve("bob", {"L": 2})
    assert inv.redis.exists(inv.keys.sku("L").buyers) == 0  # no key of its own
    assert light_fields(inv, "L") == {} and MODE_FIELD not in stock_fields(inv, "L")  # the holds carry them
    assert read_buyers(inv.redis, inv.keys.sku("L")) == {"ann": 2, "bob": 2}
    with pytest.raises(LimitExceeded):
        inv.reservations.reserve("ann", {"L": 1})
    inv.reservations.release(first.id)
    assert read_buyers(inv.redis, inv.keys.sku("L")) == {"ann": 1, "bob": 2}
    inv.reservations.reserve("ann", {"L": 1})  # the released unit counts no more
    assert_invariant(stock(inv, "L"))


def test_the_last_light_buyer_leaving_leaves_no_field(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "L", stock=5, limit=3)
    held = inv.reservations.reserve("ann", {"L": 1})
    inv.reservations.reserve("bob", {"L": 2}, ttl_seconds=5)
    inv.reservations.release(held.id)
    clock.advance(6)
    inv.reservations.expire_due()
    fields = stock_fields(inv, "L")
    assert MODE_FIELD not in fields and not light_fields(inv, "L")
    assert read_buyers(inv.redis, inv.keys.sku("L")) == {} and inv.redis.exists(inv.keys.sku("L").buyers) == 0


def test_the_seventeenth_buyer_moves_every_count_to_the_buyers_hash_for_good(inv: Inventory) -> None:
    make_product(inv, "H", stock=100, limit=3)
    holds = {f"u{i:02d}": inv.reservations.reserve(f"u{i:02d}", {"H": 1 + i % 2}) for i in range(LIGHT_BUYERS)}
    assert MODE_FIELD not in stock_fields(inv, "H") and inv.redis.exists(inv.keys.sku("H").buyers) == 0
    # the 17th hold moves the holds out, counting their 16 buyers in light fields; 'late' is the 17th buyer
    inv.reservations.reserve("late", {"H": 3})
    expected = {f"u{i:02d}": 1 + i % 2 for i in range(LIGHT_BUYERS)} | {"late": 3}
    assert stock_fields(inv, "H")[MODE_FIELD] == HEAVY and light_fields(inv, "H") == {}
    assert read_buyers(inv.redis, inv.keys.sku("H")) == expected
    with pytest.raises(LimitExceeded):
        inv.reservations.reserve("u01", {"H": 2})  # 2 held (moved) + 2 > 3
    for hold in holds.values():
        inv.reservations.release(hold.id)
    inv.reservations.reserve("new", {"H": 1})  # heavy for good: no light field again
    assert light_fields(inv, "H") == {} and read_buyers(inv.redis, inv.keys.sku("H")) == {"late": 3, "new": 1}
    assert_invariant(stock(inv, "H"))


def test_a_user_id_too_long_for_a_listpack_field_goes_to_the_buyers_hash(inv: Inventory) -> None:
    make_product(inv, "L", stock=5, limit=2)
    inv.reservations.reserve("ann", {"L": 1})
    long_user = "x" * 63  # 'b:' + 63 > 64 bytes
    inv.reservations.reserve(long_user, {"L": 2})
    assert stock_fields(inv, "L")[MODE_FIELD] == HEAVY and light_fields(inv, "L") == {}
    assert read_buyers(inv.redis, inv.keys.sku("L")) == {"ann": 1, long_user: 2}
    with pytest.raises(LimitExceeded):
        inv.reservations.reserve(long_user, {"L": 1})


def test_a_sku_counted_by_the_older_version_keeps_its_counts_and_moves_at_its_next_new_buyer(
        inv: Inventory) -> None:
    make_product(inv, "OLD", stock=10, limit=2)
    old = inv.reservations.reserve("ann", {"OLD": 2})
    keys = inv.keys.sku("OLD")
    field = f"{HOLD_PREFIX}{old.id[2:]}"  # what the version before light buyers wrote: a bare user, counted
    inv.redis.hset(keys.stock, field, stock_fields(inv, "OLD")[field].replace("|~ann", "|ann"))
    inv.redis.hset(keys.buyers, "ann", 2)
    with pytest.raises(LimitExceeded):
        inv.reservations.reserve("ann", {"OLD": 1})  # the older count still limits her
    inv.reservations.reserve("bob", {"OLD": 1})  # a new buyer whose hold carries his unit
    inv.reservations.checkout(inv.reservations.reserve("cid", {"OLD": 1}).id)  # an order: a new count
    assert stock_fields(inv, "OLD")[MODE_FIELD] == HEAVY
    assert {k.decode(): int(v) for k, v in inv.redis.hgetall(keys.buyers).items()} == {"ann": 2, "cid": 1}
    assert read_buyers(inv.redis, keys) == {"ann": 2, "bob": 1, "cid": 1}
    inv.reservations.release(old.id)
    assert read_buyers(inv.redis, keys) == {"bob": 1, "cid": 1}
    assert_invariant(stock(inv, "OLD"))


def test_orders_amends_and_failed_payments_count_the_same_in_a_light_sku(inv: Inventory) -> None:
    make_product(inv, "L", stock=10, limit=3)
    held = inv.reservations.reserve("ann", {"L": 1})
    held = inv.reservations.amend(held.id, {"L": 2}, user_id="ann")
    assert light_fields(inv, "L") == {} and read_buyers(inv.redis, inv.keys.sku("L")) == {"ann": 2}
    paid = inv.reservations.checkout(held.id)
    inv.reservations.record_payment(event_id="e-paid", result="paid", order_id=paid.id)
    assert light_fields(inv, "L") == {"ann": 2}  # a limited SKU remembers what she bought
    with pytest.raises(LimitExceeded):
        inv.reservations.reserve("ann", {"L": 2})
    second = inv.reservations.checkout(inv.reservations.reserve("ann", {"L": 1}).id)
    inv.reservations.record_payment(event_id="e-failed", result="failed", order_id=second.id)
    assert light_fields(inv, "L") == {"ann": 2}  # the failed order's unit no longer counts
    assert stock(inv, "L").sold == 2
    assert_invariant(stock(inv, "L"))


def test_a_light_hold_carries_a_uuid_buyers_units_in_22_characters(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "L", stock=10, limit=3)
    lower, upper = str(uuid.uuid4()), str(uuid.uuid4()).upper()
    first = inv.reservations.reserve(lower, {"L": 2}, ttl_seconds=5)
    inv.reservations.reserve(upper, {"L": 1})
    values = {value.rsplit("|", 1)[1] for name, value in stock_fields(inv, "L").items() if name.startswith(HOLD_PREFIX)}
    assert values == {"_" + base64.urlsafe_b64encode(uuid.UUID(lower).bytes).decode().rstrip("="), "~" + upper}
    assert light_fields(inv, "L") == {} and read_buyers(inv.redis, inv.keys.sku("L")) == {lower: 2, upper: 1}
    assert {(h.user_id, h.qty) for h in inv.catalog.holds("L")} == {(lower, 2), (upper, 1)}
    with pytest.raises(LimitExceeded):
        inv.reservations.reserve(lower, {"L": 2})  # 2 carried + 2 > 3
    clock.advance(2)
    inv.reservations.extend(first.id, seconds=5, extension_id="x1")  # a new expiry keeps the owner's form
    assert read_buyers(inv.redis, inv.keys.sku("L")) == {lower: 2, upper: 1}
    clock.advance(4)
    inv.reservations.expire_due()
    assert read_buyers(inv.redis, inv.keys.sku("L")) == {lower: 2, upper: 1}  # 6 s: extended to 7
    clock.advance(2)
    inv.reservations.expire_due()
    assert read_buyers(inv.redis, inv.keys.sku("L")) == {upper: 1} and light_fields(inv, "L") == {}
    inv.reservations.reserve(lower, {"L": 3})  # her units came back with her hold
    assert_invariant(stock(inv, "L"))


def test_moving_light_holds_out_counts_their_units_and_every_path_takes_them_back(
        inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "M", stock=200, limit=5)
    users = [str(uuid.uuid4()) for _ in range(LIGHT_BUYERS)]
    held = [inv.reservations.reserve(user, {"M": 2}, ttl_seconds=5 if i % 4 == 0 else 600)
            for i, user in enumerate(users)]
    assert read_buyers(inv.redis, inv.keys.sku("M")) == {user: 2 for user in users}
    inv.reservations.reserve("late", {"M": 1})  # the 17th hold: every light hold into the zset, counted
    assert read_buyers(inv.redis, inv.keys.sku("M")) == {user: 2 for user in users} | {"late": 1}
    with pytest.raises(LimitExceeded):
        inv.reservations.reserve(users[1], {"M": 4})  # 2 counted + 4 > 5
    inv.reservations.release(held[1].id)
    inv.reservations.amend(held[2].id, {"M": 3}, user_id=users[2])
    order = inv.reservations.checkout(held[3].id)
    clock.advance(6)
    inv.reservations.expire_due()  # users 0, 4, 8, 12 held for 5 s
    expected = {user: 2 for i, user in enumerate(users) if i % 4 and i != 1} | {users[2]: 3, "late": 1}
    assert read_buyers(inv.redis, inv.keys.sku("M")) == expected  # the order's 2 units stay (a limit)
    inv.reservations.record_payment(event_id="e-failed", result="failed", order_id=order.id)
    assert read_buyers(inv.redis, inv.keys.sku("M")) == {u: n for u, n in expected.items() if u != users[3]}
    assert_invariant(stock(inv, "M"))


def test_a_light_hold_from_before_stays_counted_until_it_goes(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "OLD", stock=10, limit=3)
    keys = inv.keys.sku("OLD")
    before = inv.reservations.reserve("ann", {"OLD": 2}, ttl_seconds=5)
    order = inv.reservations.reserve("bob", {"OLD": 1})
    for held in (before, order):  # as the version before carried units wrote them: a bare user and a count
        field = f"{HOLD_PREFIX}{held.id[2:]}"
        inv.redis.hset(keys.stock, field, stock_fields(inv, "OLD")[field].replace("|~", "|"))
    inv.redis.hset(keys.stock, mapping={f"{LIGHT_PREFIX}ann": 2, f"{LIGHT_PREFIX}bob": 1, MODE_FIELD: 2})
    assert read_buyers(inv.redis, keys) == {"ann": 2, "bob": 1}
    inv.reservations.checkout(order.id)  # sold with a limit: bob's count stays as it was
    assert light_fields(inv, "OLD") == {"ann": 2, "bob": 1}
    clock.advance(6)
    inv.reservations.reserve("cid", {"OLD": 1})  # lazy expiry takes ann's hold and its count
    assert light_fields(inv, "OLD") == {"bob": 1} and read_buyers(inv.redis, keys) == {"bob": 1, "cid": 1}
    assert_invariant(stock(inv, "OLD"))
