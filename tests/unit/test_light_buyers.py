"""Light buyers: a SKU with few buyers counts their units in its stock hash, a busy one in its buyers
hash (lua/includes/common.lua, add_buyer_units); limits hold the same either way, through the move."""

from __future__ import annotations

import pytest

from inventory import Inventory
from inventory.buyers import HEAVY, LIGHT_PREFIX, MODE_FIELD, read_buyers
from inventory.context import decode_hash
from inventory.errors import LimitExceeded
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
    assert light_fields(inv, "L") == {"ann": 2, "bob": 2} and stock_fields(inv, "L")[MODE_FIELD] == "2"
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
    assert stock_fields(inv, "H")[MODE_FIELD] == str(LIGHT_BUYERS) and inv.redis.exists(inv.keys.sku("H").buyers) == 0
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
    inv.redis.hdel(keys.stock, f"{LIGHT_PREFIX}ann", MODE_FIELD)  # what the version before light buyers wrote
    inv.redis.hset(keys.buyers, "ann", 2)
    with pytest.raises(LimitExceeded):
        inv.reservations.reserve("ann", {"OLD": 1})  # the older count still limits her
    inv.reservations.reserve("bob", {"OLD": 1})  # a new buyer: every count in the buyers hash
    assert stock_fields(inv, "OLD")[MODE_FIELD] == HEAVY
    assert {k.decode(): int(v) for k, v in inv.redis.hgetall(keys.buyers).items()} == {"ann": 2, "bob": 1}
    inv.reservations.release(old.id)
    assert read_buyers(inv.redis, keys) == {"bob": 1}
    assert_invariant(stock(inv, "OLD"))


def test_orders_amends_and_failed_payments_count_the_same_in_a_light_sku(inv: Inventory) -> None:
    make_product(inv, "L", stock=10, limit=3)
    held = inv.reservations.reserve("ann", {"L": 1})
    held = inv.reservations.amend(held.id, {"L": 2}, user_id="ann")
    assert light_fields(inv, "L") == {"ann": 2}
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
