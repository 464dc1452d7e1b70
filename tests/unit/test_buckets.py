"""A SKU split into stock buckets over several partitions: sums, routing, exact per-user limits, moves."""

from __future__ import annotations

from typing import Any

import pytest

from inventory import Inventory, Settings, ids
from inventory.buyers import read_buyers
from inventory.context import text
from inventory.buckets import (
    Layout, MAX_BUCKETS, _offsets, bucket_name, is_internal, product_of, quota_name,
)
from inventory.errors import BucketsChanged, InvalidArgument, LimitExceeded, NotSoldOut, ProductNotFound, SoldOut
from inventory.holds import read_open_holds
from inventory.keys import KeySpace
from inventory.models import RateLimit, Status
from tests.clocks import ManualClock
from tests.helpers import assert_invariant, make_product, stock

PARTITIONS = 8


@pytest.fixture
def shop(any_redis: Any, settings: Settings, clock: ManualClock) -> Inventory:
    inv = Inventory(any_redis, settings.with_overrides(redis_partitions=PARTITIONS), clock)
    make_product(inv, "HOT", stock=12, price=900, limit=2)
    return inv


def bucket_levels(inv: Inventory, sku: str = "HOT") -> list[tuple[int, int, int, int]]:
    """(total, avail, held, sold) of every bucket, each checked against the invariant."""
    out = []
    for name in inv.buckets.layout(sku, fresh=True).buckets:
        f = {k.decode(): int(v) for k, v in inv.redis.hgetall(inv.keys.sku(name).stock).items()
             if k.decode() in ("total", "avail", "held", "sold")}
        level = (f["total"], f["avail"], f["held"], f["sold"])
        assert level[1] + level[2] + level[3] == level[0] and min(level) >= 0, (name, level)
        out.append(level)
    return out


def test_offsets_spread_every_prefix_and_cover_every_partition() -> None:
    assert _offsets(8) == (0, 4, 2, 6, 1, 5, 3, 7)
    for partitions in (1, 3, 5, 16, 100):
        assert sorted(_offsets(partitions)) == list(range(partitions))


def test_bucket_and_quota_names_land_in_distinct_spread_partitions() -> None:
    keys = KeySpace("fs", 16)
    names = [bucket_name("HOT", i, 16) for i in range(4)]
    parts = [keys.partition_of(n) for n in names]
    assert len(set(parts)) == 4 and names[0] == "HOT"
    assert all(product_of(n) == "HOT" for n in names) and all(is_internal(n) for n in names[1:])
    for j in range(4):  # quota j shares bucket j's partition, so a request there is one script call
        assert keys.partition_of(quota_name("HOT", j, 16)) == parts[j]
    assert max(len(quota_name("X" * 52, j, 4096)) for j in range(MAX_BUCKETS)) <= 64


def test_split_keeps_the_sums_and_spreads_the_units(shop: Inventory) -> None:
    layout = shop.buckets.split("HOT", 4)
    assert (layout.active, layout.created) == (4, 4)
    levels = bucket_levels(shop)
    assert [lv[1] for lv in levels] == [3, 3, 3, 3]
    total = stock(shop)
    assert (total.total, total.available, total.held, total.sold) == (12, 12, 0, 0)
    assert [p.sku for p in shop.catalog.list()] == ["HOT"]  # buckets and quotas are not products
    with pytest.raises(InvalidArgument):  # '@' is no product SKU's character: internal names stay internal
        shop.catalog.get(layout.buckets[1])


def test_reserve_on_a_split_sku_sells_exactly_the_stock_and_shows_the_product(shop: Inventory) -> None:
    shop.buckets.split("HOT", 4)
    held = [shop.reservations.reserve(f"u{i}", {"HOT": 1}) for i in range(12)]
    assert all(r.lines[0].sku == "HOT" and r.lines[0].unit_price == 900 for r in held)
    with pytest.raises(SoldOut) as refused:
        shop.reservations.reserve("late", {"HOT": 1})
    assert refused.value.details["sku"] == "HOT" and refused.value.details["available"] == 0
    total = stock(shop)
    assert (total.available, total.held) == (0, 12)
    assert shop.buckets.refused_with_stock == 0
    got = shop.reservations.get(held[0].id)
    assert [(line.sku, line.qty) for line in got.lines] == [("HOT", 1)]
    order = shop.reservations.checkout(held[0].id)
    assert [(line.sku, line.qty) for line in order.lines] == [("HOT", 1)]
    shop.reservations.release(held[1].id)
    total = stock(shop)
    assert (total.available, total.held, total.sold) == (1, 10, 1)
    bucket_levels(shop)


def test_a_refused_bucket_sends_the_request_to_the_fullest_one(shop: Inventory) -> None:
    layout = shop.buckets.split("HOT", 4)
    first = layout.first_bucket("bob")
    target = next(n for n in layout.buckets if n != first)  # every unit into one bucket that is not bob's
    for name in layout.buckets:
        if name != target:
            shop.buckets.move(name, target, 100)
    assert [lv[1] for lv in bucket_levels(shop)].count(12) == 1
    held = shop.reservations.reserve("bob", {"HOT": 2})
    assert held.status is Status.HELD and stock(shop).held == 2


def test_per_user_limit_is_exact_across_buckets(shop: Inventory) -> None:
    layout = shop.buckets.split("HOT", 4)
    shop.reservations.reserve("alice", {"HOT": 1})
    first = layout.first_bucket("alice")  # emptied: her next unit comes from another bucket
    shop.buckets.move(first, next(n for n in layout.buckets if n != first), 100)
    second = shop.reservations.reserve("alice", {"HOT": 1})
    token = second.id[2:]
    record = shop.reservations.calls.read(shop.keys.of_token(token), token)
    parts = [record] + [shop.reservations.calls.read(shop.keys.parts[int(q)], token)
                        for q in record.get("parts", "").split(",") if q]
    assert first not in {f[2:] for r in parts for f in r if f.startswith("l:")}
    with pytest.raises(LimitExceeded) as refused:
        shop.reservations.reserve("alice", {"HOT": 1})
    assert refused.value.details["sku"] == "HOT"  # the quota SKU's name stays inside
    assert stock(shop).held == 2


def test_units_held_before_the_split_count_toward_the_limit(shop: Inventory) -> None:
    shop.reservations.reserve("alice", {"HOT": 2})
    shop.buckets.split("HOT", 3)
    with pytest.raises(LimitExceeded):
        shop.reservations.reserve("alice", {"HOT": 1})


def test_a_caller_that_read_the_layout_before_the_split_is_refused_and_routed(shop: Inventory) -> None:
    assert not shop.buckets.layout("HOT").split  # cached as not split
    other = Inventory(shop.redis, shop.settings, None)
    other.buckets.split("HOT", 2)
    with pytest.raises(BucketsChanged):  # the script itself refuses an unrouted call on a split SKU
        shop.reservations.calls.reserve(shop.keys.of_sku("HOT"), shop.keys.token_in("t" * 20, 0), "x", "", 60_000,
                                        [("HOT", 1)])
    per_user = RateLimit(shop.keys.scoped("rl:user:carol"), 5, 60, "5 per 1 minute")
    held = shop.reservations.reserve("carol", {"HOT": 1}, rate_limits=[per_user])  # stale: refused, routed
    assert held.status is Status.HELD and stock(shop).held == 1
    assert int(shop.redis.get(per_user.key)) == 1  # the request counted once, not once per try


def test_amend_and_expiry_on_a_split_sku(shop: Inventory, clock: ManualClock) -> None:
    shop.buckets.split("HOT", 4)
    held = shop.reservations.reserve("dave", {"HOT": 1}, ttl_seconds=60)
    amended = shop.reservations.amend(held.id, {"HOT": 2})
    assert [(line.sku, line.qty) for line in amended.lines] == [("HOT", 2)] and stock(shop).held == 2
    with pytest.raises(LimitExceeded):
        shop.reservations.amend(held.id, {"HOT": 3})
    shop.reservations.amend(held.id, {"HOT": 1})
    assert stock(shop).held == 1
    clock.advance(61)
    shop.sweep()
    total = stock(shop)
    assert (total.available, total.held) == (12, 0)
    bucket_levels(shop)


def test_adjust_and_resize_act_on_the_sum(shop: Inventory) -> None:
    shop.buckets.split("HOT", 4)
    level = shop.catalog.adjust_stock("HOT", add=8, reason="restock")
    assert (level.total, level.available) == (20, 20)
    assert [lv[1] for lv in bucket_levels(shop)] == [5, 5, 5, 5]
    level = shop.catalog.adjust_stock("HOT", set_total=6, reason="recount")
    assert (level.total, level.available) == (6, 6)
    shop.buckets.split("HOT", 2)  # live shrink: the retired buckets are emptied into the active ones
    levels = bucket_levels(shop)
    assert [lv[1] for lv in levels] == [3, 3, 0, 0] and stock(shop).total == 6
    shop.buckets.split("HOT", 6)
    assert sum(lv[1] for lv in bucket_levels(shop)) == 6 and stock(shop).total == 6


def test_a_move_interrupted_after_out_is_finished_once(shop: Inventory, clock: ManualClock) -> None:
    layout = shop.buckets.split("HOT", 2)
    src, dst = layout.buckets
    shop.buckets.transfer(src, "out", "m1", 2, dst)  # the process dies here
    assert stock(shop).total == 10
    assert shop.buckets.resume_moves(older_than_ms=0) == 1
    assert stock(shop).total == 12
    assert shop.buckets.resume_moves(older_than_ms=0) == 0
    assert shop.buckets.transfer(dst, "in", "m1", 2, "")[0] == 1  # replay: no second copy
    assert stock(shop).total == 12
    bucket_levels(shop)


def test_split_refuses_bad_input_and_changes_nothing(shop: Inventory) -> None:
    for count in (0, MAX_BUCKETS + 1, "2", True):
        with pytest.raises(InvalidArgument):
            shop.buckets.split("HOT", count)  # type: ignore[arg-type]
    with pytest.raises(ProductNotFound):
        shop.buckets.split("NOPE", 2)
    assert not shop.buckets.layout("HOT", fresh=True).split
    assert Layout("HOT", 0, 0, 8).buckets == ["HOT"]


def test_admin_status_sums_the_buckets_and_lists_only_products(shop: Inventory) -> None:
    from inventory.sale_status import page_of_skus, read_status

    make_product(shop, "COLD", stock=3)
    shop.buckets.split("HOT", 4)
    for i in range(5):
        shop.reservations.reserve(f"s{i}", {"HOT": 1})
    (status,) = read_status(shop, ["HOT"])
    assert (status.total, status.available, status.held, status.open_holds) == (12, 7, 5, 5)
    assert status.reservations_per_minute == 5
    assert sorted(h.user_id for h in shop.catalog.holds("HOT")) == [f"s{i}" for i in range(5)]
    assert page_of_skus(shop) == ["COLD", "HOT"]


def _held_per_bucket(inv: Inventory, sku: str = "HOT") -> dict[str, list[str]]:
    """Reservation ids of the open holds on each bucket of a split SKU (waitlist pools left out)."""
    out: dict[str, list[str]] = {}
    for name in inv.buckets.layout(sku, fresh=True).buckets:
        tokens = [hold[0] for hold in read_open_holds(inv.redis, inv.keys.sku(name))]
        out[name] = [ids.reservation_id(token) for token in tokens if not token.startswith("~")]
    return out


def _sell_out_split(inv: Inventory, buckets: int = 4) -> dict[str, list[str]]:
    inv.buckets.split("HOT", buckets)
    for i in range(12):
        inv.reservations.reserve(f"s{i}", {"HOT": 1}, ttl_seconds=3600)
    return _held_per_bucket(inv)


def test_a_unit_back_in_any_bucket_goes_to_the_first_buyer_in_line(shop: Inventory) -> None:
    per_bucket = _sell_out_split(shop)
    with pytest.raises(SoldOut) as refused:
        shop.reservations.reserve("late", {"HOT": 1})
    assert refused.value.details["waitlist_length"] == 0 and refused.value.details["waitlist_open"] is True
    for user in ("wendy", "walt"):
        assert shop.waitlists.join("HOT", user, 1).status == "waiting"
    last = shop.buckets.layout("HOT").buckets[-1]
    assert shop.redis.hget(shop.keys.sku(last).stock, "wl") == b"1"  # flagged with the epoch the queue formed at
    shop.reservations.release(per_bucket[last][0])  # back in a bucket other than the queue's
    with pytest.raises(SoldOut) as refused:  # set aside in that bucket: a bot's retry cannot take it
        shop.reservations.reserve("bot", {"HOT": 1})
    assert refused.value.details["waitlist_length"] == 2 and refused.value.details["available"] == 0
    assert shop.buckets.refused_with_stock == 0
    assert shop.waitlists.counts(["HOT"]) == {"HOT": (2, 1)}  # the metrics count it where it waits
    wendy = shop.waitlists.get("HOT", "wendy")  # a read gathers it into bucket 0 and offers it
    assert (wendy.status, wendy.units) == ("offered", 1)
    assert shop.waitlists.get("HOT", "walt").status == "waiting"
    reservation = shop.waitlists.claim("HOT", "wendy")
    assert [(line.sku, line.qty) for line in reservation.lines] == [("HOT", 1)]
    order = shop.reservations.checkout(reservation.id)
    shop.reservations.record_payment(event_id="p-wendy", result="paid", order_id=order.id)
    level = stock(shop)
    assert (level.total, level.available, level.held, level.sold) == (12, 0, 11, 1)
    bucket_levels(shop)


def test_once_nobody_waits_the_flags_drop_and_set_aside_units_sell_again(shop: Inventory) -> None:
    per_bucket = _sell_out_split(shop)
    shop.waitlists.join("HOT", "wendy", 1)
    names = shop.buckets.layout("HOT").buckets
    shop.reservations.release(per_bucket[names[1]][0])
    shop.reservations.release(per_bucket[names[2]][0])
    shop.waitlists.leave("HOT", "wendy")  # before anything was gathered: nobody waits now
    assert stock(shop).available == 0  # still set aside in buckets 1 and 2
    shop.sweep()
    assert all(shop.redis.hget(shop.keys.sku(n).stock, "wl") is None for n in names)
    assert stock(shop).available == 2 and sum(lv[1] for lv in bucket_levels(shop)) == 2
    shop.reservations.reserve("next", {"HOT": 2})


def test_a_flag_a_later_join_raised_survives_a_lowering_decided_before_it(shop: Inventory) -> None:
    per_bucket = _sell_out_split(shop)
    layout = shop.buckets.layout("HOT")
    shop.waitlists.join("HOT", "wendy", 1)
    shop.waitlists.leave("HOT", "wendy")
    seen = shop.redis.hget(shop.keys.sku("HOT").stock, "wle")  # the sweeper reads: nobody waits, epoch 1
    shop.waitlists.join("HOT", "walt", 1)  # a join lands before the sweeper lowers: epoch 2, flags 2
    assert shop.buckets.waitlist.lower(layout, int(seen)) == 0  # the stale lowering leaves them
    shop.reservations.release(per_bucket[layout.buckets[3]][0])
    assert stock(shop).available == 0
    assert shop.waitlists.get("HOT", "walt").status == "offered"


def test_a_joiner_killed_before_flagging_is_flagged_by_the_sweeper(shop: Inventory) -> None:
    per_bucket = _sell_out_split(shop)
    part = shop.keys.of_sku("HOT")
    shop.ctx.run("join_waitlist", [*shop.waitlists._keys(shop.keys.sku("HOT")), part.sale_switch, part.waitlists],
                 ["HOT", "wendy", 1, 600_000, 5, 30_000, shop.keys.token_in("ab" * 16, part.index)])  # then dies
    shop.sweep()
    last = shop.buckets.layout("HOT").buckets[-1]
    assert shop.redis.hget(shop.keys.sku(last).stock, "wl") == b"1"
    shop.reservations.release(per_bucket[last][0])
    with pytest.raises(SoldOut):
        shop.reservations.reserve("bot", {"HOT": 1})
    shop.sweep()
    assert shop.waitlists.get("HOT", "wendy").status == "offered"


def test_a_claimed_offer_counts_in_the_buyers_quota_exactly(shop: Inventory) -> None:
    per_bucket = _sell_out_split(shop)  # HOT has a limit of 2: quota lines on every reservation
    assert shop.buckets.layout("HOT").quota
    for user in ("wendy", "walt"):
        shop.waitlists.join("HOT", user, 2)
    with pytest.raises(LimitExceeded):  # s0 holds one unit already, counted in their quota
        shop.waitlists.join("HOT", "s0", 2)
    names = shop.buckets.layout("HOT").buckets
    for name in names[1:3]:
        shop.reservations.release(per_bucket[name][0])
    shop.sweep()
    assert shop.waitlists.get("HOT", "wendy").units == 2
    reservation = shop.waitlists.claim("HOT", "wendy")
    quota = shop.buckets.layout("HOT").quota_for("wendy")
    assert read_buyers(shop.redis, shop.keys.sku(quota))["wendy"] == 2  # the claimed units count
    shop.reservations.release(per_bucket[names[3]][0])
    shop.sweep()  # the unit is walt's (next in line); once he leaves it is on sale again
    shop.waitlists.leave("HOT", "walt")
    shop.sweep()
    with pytest.raises(LimitExceeded):  # wendy can hold no more, whichever bucket has the unit
        shop.reservations.reserve("wendy", {"HOT": 1})
    assert [(line.sku, line.qty) for line in reservation.lines] == [("HOT", 2)]
    shop.reservations.checkout(reservation.id)


def test_a_claim_the_limit_no_longer_allows_passes_the_units_on(shop: Inventory) -> None:
    per_bucket = _sell_out_split(shop)
    shop.waitlists.join("HOT", "wendy", 2)
    shop.waitlists.join("HOT", "walt", 1)
    shop.waitlists.join("HOT", "wade", 2)
    names = shop.buckets.layout("HOT").buckets
    shop.reservations.release(per_bucket[names[1]][0])
    shop.reservations.release(per_bucket[names[2]][0])
    shop.sweep()
    assert shop.waitlists.get("HOT", "wendy").status == "offered"
    shop.reservations.release(per_bucket[names[3]][0])  # one more unit back: walt's
    shop.sweep()
    assert shop.waitlists.get("HOT", "walt").status == "offered"
    shop.catalog.configure("HOT", per_user_limit=1)  # the admin lowers the limit below wendy's offer
    with pytest.raises(LimitExceeded):
        shop.waitlists.claim("HOT", "wendy")
    shop.catalog.configure("HOT", per_user_limit=2)
    level = stock(shop)
    assert level.available == 0 and level.held == 12  # the units stay with the queue: wade's now
    wade = shop.waitlists.get("HOT", "wade")
    assert (wade.status, wade.units) == ("offered", 2)


def test_a_checkout_finishes_a_claim_stopped_before_its_quota_line(shop: Inventory) -> None:
    per_bucket = _sell_out_split(shop)
    shop.waitlists.join("HOT", "wendy", 1)
    shop.reservations.release(per_bucket[shop.buckets.layout("HOT").buckets[1]][0])
    shop.sweep()
    token = text(shop.redis.hget(shop.keys.sku("HOT").waitinfo, "u:wendy")).split("|")[4]
    part = shop.keys.of_sku("HOT")
    keys = shop.keys.sku("HOT")
    shop.ctx.run("claim_offer", [part.reservation(token), part.expiries, part.dirty, part.sale_switch, keys.stock,
                                 keys.holds, keys.buyers, keys.waitinfo, keys.index],
                 ["wendy", token, "HOT", 600_000, 3_600_000])  # the claiming process dies here
    quota = shop.buckets.layout("HOT").quota_for("wendy")
    assert "wendy" not in read_buyers(shop.redis, shop.keys.sku(quota))
    shop.reservations.checkout(ids.reservation_id(token))
    assert read_buyers(shop.redis, shop.keys.sku(quota))["wendy"] == 1


@pytest.mark.parametrize("queue_from_before_epochs", [False, True])
def test_a_split_while_buyers_wait_keeps_their_queue(shop: Inventory, queue_from_before_epochs: bool) -> None:
    make_product(shop, "W", stock=2)
    held = [shop.reservations.reserve(u, {"W": 1}, ttl_seconds=3600) for u in ("a", "b")]
    shop.waitlists.join("W", "wendy", 1)
    if queue_from_before_epochs:  # joined on a release that kept no waitlist epochs
        shop.redis.hdel(shop.keys.sku("W").stock, "wle", "wlf")
    shop.buckets.split("W", 3)
    assert stock(shop, "W").available == 0
    flags = [shop.redis.hget(shop.keys.sku(n).stock, "wl") for n in shop.buckets.layout("W", fresh=True).buckets]
    assert flags[0] is None and all(flags[1:])  # the new buckets set aside for wendy's queue
    shop.reservations.release(held[0].id)
    with pytest.raises(SoldOut):  # wherever it came back, the unit is wendy's
        shop.reservations.reserve("bot", {"W": 1})
    shop.sweep()
    assert shop.waitlists.get("W", "wendy").status == "offered"
    shop.waitlists.leave("W", "wendy")
    shop.sweep()
    assert stock(shop, "W").available == 1
    names = shop.buckets.layout("W", fresh=True).buckets
    assert all(shop.redis.hget(shop.keys.sku(n).stock, "wl") is None for n in names)  # nobody waits: no flags


def test_a_limit_set_on_a_live_split_sku_counts_units_held_before_it(shop: Inventory) -> None:
    make_product(shop, "FREE", stock=20)
    layout = shop.buckets.split("FREE", 4)
    assert not layout.quota  # no limit: no quota lines, one bucket line per request
    for bucket_user in ("amy", "amy", "amy", "ben"):
        shop.reservations.reserve(bucket_user, {"FREE": 1})
    stale = Inventory(shop.redis, shop.settings, None)
    assert not stale.buckets.layout("FREE").quota  # this process has the layout from before the limit
    shop.catalog.configure("FREE", per_user_limit=3)
    assert shop.buckets.layout("FREE", fresh=True).quota
    with pytest.raises(LimitExceeded):  # her 3 units, in whatever buckets, were copied into her quota
        stale.reservations.reserve("amy", {"FREE": 1})
    stale.reservations.reserve("ben", {"FREE": 2})
    with pytest.raises(LimitExceeded):
        stale.reservations.reserve("ben", {"FREE": 1})
    assert stock(shop, "FREE").held == 6
    assert bucket_levels(shop, "FREE")


def test_a_shrink_empties_the_retired_buckets_whatever_the_shares(shop: Inventory) -> None:
    layout = shop.buckets.split("HOT", 3)
    last = layout.buckets[2]
    for name in layout.buckets[:2]:  # 11 units in the two buckets that stay, 1 in the one that goes
        shop.buckets.move(last, name, 100)
    shop.buckets.move(layout.buckets[0], last, 1)
    shop.buckets.split("HOT", 2)
    assert [lv[1] for lv in bucket_levels(shop)][2] == 0 and stock(shop).available == 12
    for i in range(12):
        shop.reservations.reserve(f"t{i}", {"HOT": 1})
    assert stock(shop).available == 0


def test_an_amend_built_on_the_layout_before_a_split_is_refused_and_routed(shop: Inventory) -> None:
    held = shop.reservations.reserve("amy", {"HOT": 1})  # before the split: no quota line
    stale = Inventory(shop.redis, shop.settings, None)
    assert not stale.buckets.layout("HOT").split
    shop.buckets.split("HOT", 4)
    with pytest.raises(BucketsChanged):  # the script refuses a growing line the caller did not route
        stale.reservations.calls.amend(shop.keys.of_token(held.id[2:]), held.id[2:], "", {"HOT": 2})
    assert [(line.sku, line.qty) for line in stale.reservations.amend(held.id, {"HOT": 2}).lines] == [("HOT", 2)]
    with pytest.raises(LimitExceeded):  # her quota counts both units: the one copied at the split, the one added
        shop.reservations.reserve("amy", {"HOT": 1})
    assert stock(shop).held == 2
    bucket_levels(shop)


def test_a_line_no_single_bucket_can_serve_is_split_over_the_fullest(shop: Inventory) -> None:
    shop.buckets.split("HOT", 4)
    for i in range(9):  # 3 units left, one in each of three buckets
        shop.reservations.reserve(f"f{i}", {"HOT": 1})
    shop.buckets.rebalance("HOT")
    left = [lv[1] for lv in bucket_levels(shop)]
    assert sum(left) == 3 and max(left) == 1
    held = shop.reservations.reserve("pair", {"HOT": 2})
    assert [(line.sku, line.qty) for line in held.lines] == [("HOT", 2)]
    assert stock(shop).available == 1 and shop.buckets.refused_with_stock == 0
    order = shop.reservations.checkout(held.id)
    assert [(line.sku, line.qty) for line in order.lines] == [("HOT", 2)]
    with pytest.raises(SoldOut) as refused:
        shop.reservations.reserve("pair2", {"HOT": 2})
    assert refused.value.details["available"] == 1 and not refused.value.with_stock
    bucket_levels(shop)


def test_a_split_killed_before_its_quotas_opened_is_finished_by_the_sweeper(
        shop: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    from inventory.errors import SaleNotActive

    shop.reservations.reserve("amy", {"HOT": 2})  # her units before the split
    monkeypatch.setattr(shop.buckets, "_copy_buyers", lambda layout: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # the admin's process dies after marking the buckets
        shop.buckets.split("HOT", 4)
    monkeypatch.undo()
    with pytest.raises(SaleNotActive):  # quotas still paused: nothing sells on a half-built layout
        shop.reservations.reserve("ben", {"HOT": 1})
    shop.sweep()  # no human: the sweeper finishes opening them
    shop.reservations.reserve("ben", {"HOT": 1})
    with pytest.raises(LimitExceeded):  # and amy's units from before the split still count
        shop.reservations.reserve("amy", {"HOT": 1})
    assert stock(shop).held == 3


def test_a_limit_change_killed_before_bucket_0_was_marked_is_finished_by_the_sweeper(
        shop: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    make_product(shop, "FREE", stock=8)
    layout = shop.buckets.split("FREE", 4)
    shop.reservations.reserve("amy", {"FREE": 3})

    def dies(*_: Any) -> None:
        shop.buckets._mark_quota(layout.buckets[1:])
        raise KeyboardInterrupt

    monkeypatch.setattr(shop.buckets, "_open_quotas", dies)
    with pytest.raises(KeyboardInterrupt):
        shop.catalog.configure("FREE", per_user_limit=3)
    monkeypatch.undo()
    shop.sweep()
    assert shop.buckets.layout("FREE", fresh=True).quota
    with pytest.raises(LimitExceeded):
        shop.reservations.reserve("amy", {"FREE": 1})
    shop.reservations.reserve("ben", {"FREE": 3})
    assert stock(shop, "FREE").held == 6


def test_extension_payment_failure_and_payment_deadline_on_a_split_sku(shop: Inventory, clock: ManualClock) -> None:
    shop.buckets.split("HOT", 4)
    users = [f"x{n}" for n in range(6)]
    held = {user: shop.reservations.reserve(user, {"HOT": 2}, ttl_seconds=60) for user in users}
    assert any(len(shop.reservations.calls.read(shop.keys.of_token(r.id[2:]), r.id[2:]).get("parts", "")) > 0
               for r in held.values())  # some bucket and quota lines live in different partitions
    for user in users[:4]:
        ext = shop.reservations.extend(held[user].id, seconds=300, extension_id=f"e-{user}")
        assert ext.extensions == 1
    clock.advance(120)
    assert shop.sweep().units_returned == 4  # the two holds not extended, wherever their buckets are
    assert [shop.reservations.get(held[u].id).status for u in users[4:]] == [Status.EXPIRED] * 2
    orders = {user: shop.reservations.checkout(held[user].id) for user in users[:4]}
    assert shop.reservations.extend(held["x0"].id, seconds=1200, extension_id="pay-x0").kind == "payment"
    shop.reservations.record_payment(event_id="f-x1", result="failed", order_id=orders["x1"].id)
    shop.reservations.record_payment(event_id="p-x2", result="paid", order_id=orders["x2"].id)
    clock.advance(shop.settings.payment_ttl_seconds + 1)
    shop.sweep()  # x3's payment deadline passed; x0's was extended past it
    assert shop.reservations.get_order(orders["x3"].id).status is Status.PAYMENT_EXPIRED
    assert shop.reservations.get_order(orders["x0"].id).status is Status.PENDING_PAYMENT
    level = stock(shop)
    assert (level.total, level.available, level.held, level.sold) == (12, 8, 0, 4)  # x0 and x2: 2 units each
    bucket_levels(shop)
    quotas = shop.buckets.layout("HOT").quotas
    counted = {u: sum(read_buyers(shop.redis, shop.keys.sku(q)).get(u, 0) for q in quotas) for u in users}
    assert counted == {"x0": 2, "x1": 0, "x2": 2, "x3": 0, "x4": 0, "x5": 0}  # what came back left the limit


def test_a_hold_expired_in_any_bucket_comes_back_before_a_buyer_joins(shop: Inventory, clock: ManualClock) -> None:
    shop.buckets.split("HOT", 4)
    held = [shop.reservations.reserve(f"s{i}", {"HOT": 1}, ttl_seconds=60 if i else 3600) for i in range(12)]
    assert len(held) == 12 and sum(1 for level in bucket_levels(shop) if level[2]) > 1  # holds in several buckets
    clock.advance(61)  # every hold but s0's expired; no script has touched their buckets since
    with pytest.raises(NotSoldOut) as refused:  # as on an unsplit SKU: the units are back, reserve them
        shop.waitlists.join("HOT", "late", 1)
    assert refused.value.details["available"] == 11
    assert shop.reservations.reserve("late", {"HOT": 1}).status is Status.HELD
