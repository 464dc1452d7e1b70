"""The expiry index lists SKUs with open holds, not reservations: one entry per SKU in its index bucket at
or before its earliest hold expiry, and one per bucket in the partition's index at its earliest SKU's; the
sweeper gives back the SKU's due holds and moves both entries on."""

from __future__ import annotations

import pytest

from inventory import Inventory
from inventory.buyers import read_buyers
from inventory.errors import InvalidArgument, InventoryError
from inventory.keys import HOLDS_IN, HOLDS_OF
from inventory.models import Status
from tests.clocks import ManualClock
from tests.helpers import assert_invariant, make_product, stock


@pytest.fixture
def shop(inv: Inventory) -> Inventory:
    make_product(inv, "A", stock=10, price=100, limit=5)
    make_product(inv, "B", stock=3, price=250)
    return inv


def index(inv: Inventory, sku: str) -> dict[str, float]:
    """The expiry-index entries of sku's partition, as {member: score}."""
    return {m.decode(): s for m, s in inv.redis.zrange(inv.keys.of_sku(sku).expiries, 0, -1, withscores=True)}


def listed_at(inv: Inventory, sku: str) -> float | None:
    """When the sweeper next looks at sku: its entry in its index bucket, checked against the bucket's own
    entry in the partition's index, which is never later (None: not listed)."""
    part = inv.keys.of_sku(sku)
    at = inv.redis.zscore(part.sku(sku).index, f"{HOLDS_OF}{sku}")
    bucket_at = index(inv, sku).get(f"{HOLDS_IN}{part.index_number(sku)}")
    if at is None:
        return None
    assert bucket_at is not None and bucket_at <= at, (sku, at, bucket_at)
    return at


def unlist(inv: Inventory, sku: str) -> None:
    """Take sku and its bucket out of the expiry index, as if its holds had been taken before it existed."""
    part = inv.keys.of_sku(sku)
    inv.redis.zrem(part.sku(sku).index, f"{HOLDS_OF}{sku}")
    inv.redis.zrem(part.expiries, f"{HOLDS_IN}{part.index_number(sku)}")


def test_a_sku_is_listed_once_at_its_earliest_hold_and_no_token_is(shop: Inventory, clock: ManualClock) -> None:
    early = shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=30)
    shop.reservations.reserve("bob", {"A": 1}, ttl_seconds=10)
    clock.advance(1)
    shop.reservations.reserve("carol", {"A": 2, "B": 1}, ttl_seconds=60)
    assert listed_at(shop, "A") == early.expires_at.timestamp() * 1000 - 20_000  # bob's, 10 s after start
    assert not [m for m in index(shop, "A") if not m.startswith(HOLDS_IN)]  # buckets only: no token, no SKU
    assert listed_at(shop, "B") == clock.now_ms() + 60_000


def test_the_sweeper_gives_back_due_holds_and_moves_the_entry_to_the_next(shop: Inventory, clock: ManualClock) -> None:
    first = shop.reservations.reserve("alice", {"A": 2}, ttl_seconds=10)
    second = shop.reservations.reserve("bob", {"A": 1}, ttl_seconds=30)
    clock.advance(10)
    result = shop.reservations.expire_due()
    assert (result.expired, result.units_returned) == (1, 2)
    assert (stock(shop, "A").available, stock(shop, "A").held) == (9, 1)
    assert listed_at(shop, "A") == second.expires_at.timestamp() * 1000
    assert shop.reservations.get(first.id).status is Status.EXPIRED  # the record reads as expired
    clock.advance(20)
    assert shop.reservations.expire_due().expired == 1
    assert listed_at(shop, "A") is None and index(shop, "A") == {}  # no hold left: no entry, no bucket entry
    assert_invariant(stock(shop, "A"))
    assert read_buyers(shop.redis, shop.keys.sku("A")) == {}


def test_an_extended_hold_outlives_its_first_listing(shop: Inventory, clock: ManualClock) -> None:
    held = shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=10)
    shop.reservations.extend(held.id, seconds=100, extension_id="x")
    clock.advance(10)
    assert shop.reservations.expire_due().expired == 0  # listed early: nothing due, the entry moves on
    assert stock(shop, "A").held == 1
    assert listed_at(shop, "A") == clock.now_ms() + 90_000
    clock.advance(90)
    assert shop.reservations.expire_due().expired == 1 and stock(shop, "A").held == 0


def test_a_released_hold_leaves_an_entry_the_sweeper_drops(shop: Inventory, clock: ManualClock) -> None:
    shop.reservations.release(shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=10).id)
    clock.advance(10)
    assert shop.reservations.expire_due().expired == 0
    assert index(shop, "A") == {}


def test_a_hold_listed_by_its_token_before_the_per_sku_index_still_expires(shop: Inventory, clock: ManualClock) -> None:
    """An upgrade: reservations taken by the previous version are listed by token, not by SKU."""
    held = shop.reservations.reserve("alice", {"A": 2}, ttl_seconds=10)
    token, expiries = held.id[2:], shop.keys.of_sku("A").expiries
    unlist(shop, "A")
    shop.redis.zadd(expiries, {token: held.expires_at.timestamp() * 1000})
    shop.reservations.extend(held.id, seconds=20, extension_id="x")  # the token's listing moves with the hold
    clock.advance(10)
    assert shop.reservations.expire_due().expired == 0
    clock.advance(10)
    result = shop.reservations.expire_due()
    assert (result.expired, result.units_returned) == (1, 2)
    assert stock(shop, "A").held == 0 and shop.reservations.get(held.id).status is Status.EXPIRED
    assert shop.redis.zscore(expiries, token) is None


def test_a_full_batch_comes_back_for_the_rest(shop: Inventory, clock: ManualClock) -> None:
    for n in range(5):
        shop.reservations.reserve(f"user{n}", {"A": 1}, ttl_seconds=10)
    clock.advance(10)
    calls = shop.reservations.calls
    assert calls.sweep_holds(shop.keys.of_sku("A"), "A", 2) == (2, 2, True)
    assert listed_at(shop, "A") <= clock.now_ms()  # still due
    assert shop.reservations.expire_due(batch_size=2).expired == 3
    assert stock(shop, "A").available == 10


@pytest.mark.parametrize("sku,batch", [("", 10), ("A", 0), ("A", 100_001), ("A", -1)])
def test_sweep_holds_refuses_bad_arguments_and_changes_nothing(shop: Inventory, clock: ManualClock,
                                                                sku: str, batch: int) -> None:
    shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=10)
    clock.advance(10)
    with pytest.raises(InvalidArgument):
        shop.reservations.calls.sweep_holds(shop.keys.of_sku(sku), sku, batch)
    assert stock(shop, "A").held == 1


def test_a_token_that_cannot_be_expired_is_logged_and_the_sweep_goes_on(
        shop: Inventory, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """One token the sweeper fails on (here: an error from its release) stays listed for the next pass,
    while the rest of the pass still gives back what is due."""
    stuck, fine = (shop.reservations.reserve(user, {"A": 1}, ttl_seconds=10) for user in ("alice", "bob"))
    expiries = shop.keys.of_sku("A").expiries
    unlist(shop, "A")  # listed by token, the form the per-token path sweeps
    shop.redis.zadd(expiries, {stuck.id[2:]: clock.now_ms() + 10_000, fine.id[2:]: clock.now_ms() + 10_001})
    release = shop.reservations.calls.release

    def failing_release(part, token, *args, **kwargs):
        if token == stuck.id[2:]:
            raise InventoryError("injected: the part could not be resolved")
        return release(part, token, *args, **kwargs)

    monkeypatch.setattr(shop.reservations.calls, "release", failing_release)
    clock.advance(11)
    result = shop.reservations.expire_due()
    assert (result.expired, result.units_returned) == (1, 1)
    assert shop.reservations.get(fine.id).status is Status.EXPIRED
    assert shop.redis.zscore(expiries, stuck.id[2:]) is not None  # still listed
    assert any("could not be expired" in r.getMessage() and stuck.id[2:] in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(shop.reservations.calls, "release", release)
    assert shop.reservations.expire_due().expired == 1
    assert stock(shop, "A").held == 0 and shop.reservations.get(stuck.id).status is Status.EXPIRED


def same_bucket_skus(inv: Inventory, count: int) -> list[str]:
    """`count` SKU names of one partition listed in one index bucket."""
    part, by_bucket = inv.keys.parts[0], {}
    for n in range(100_000):
        sku = f"S{n}"
        if inv.keys.of_sku(sku) == part:
            group = by_bucket.setdefault(part.index_number(sku), [])
            group.append(sku)
            if len(group) == count:
                return group
    raise AssertionError("no bucket shared")  # pragma: no cover


def test_skus_sharing_a_bucket_are_swept_in_expiry_order(inv: Inventory, clock: ManualClock) -> None:
    early, late = same_bucket_skus(inv, 2)
    for sku in (early, late):
        make_product(inv, sku, stock=5, price=100)
    inv.reservations.reserve("alice", {late: 1}, ttl_seconds=30)
    inv.reservations.reserve("bob", {early: 2}, ttl_seconds=10)
    part = inv.keys.of_sku(early)
    bucket_member = f"{HOLDS_IN}{part.index_number(early)}"
    assert index(inv, early) == {bucket_member: clock.now_ms() + 10_000}  # the bucket at its earliest SKU
    clock.advance(10)
    assert (inv.reservations.expire_due().expired, stock(inv, early).held, stock(inv, late).held) == (1, 0, 1)
    assert index(inv, early) == {bucket_member: clock.now_ms() + 20_000}  # moved on to the other SKU
    assert listed_at(inv, early) is None and listed_at(inv, late) == clock.now_ms() + 20_000
    clock.advance(20)
    assert inv.reservations.expire_due().expired == 1 and index(inv, late) == {}
    assert inv.redis.exists(part.sku(late).index) == 0  # an empty bucket is no key


def test_more_due_skus_in_a_bucket_than_a_batch_are_all_swept(inv: Inventory, clock: ManualClock) -> None:
    skus = same_bucket_skus(inv, 5)
    for n, sku in enumerate(skus):
        make_product(inv, sku, stock=5, price=100)
        inv.reservations.reserve(f"user{n}", {sku: 1}, ttl_seconds=10)
    clock.advance(10)
    result = inv.reservations.expire_due(batch_size=2)
    assert (result.expired, result.units_returned) == (5, 5)
    assert [stock(inv, sku).held for sku in skus] == [0] * 5 and index(inv, skus[0]) == {}


def test_one_batch_sweeps_at_most_its_size_over_all_the_buckets_it_reads(inv: Inventory, clock: ManualClock) -> None:
    part, by_bucket = inv.keys.parts[0], {}
    for n in range(100_000):  # three buckets of partition 0, two SKUs each
        if inv.keys.of_sku(sku := f"S{n}") == part and len(by_bucket.get(part.index_number(sku), [])) < 2:
            by_bucket.setdefault(part.index_number(sku), []).append(sku)
        if sum(len(group) == 2 for group in by_bucket.values()) == 3:
            break
    skus = [sku for group in by_bucket.values() if len(group) == 2 for sku in group][:6]
    for n, sku in enumerate(skus):
        make_product(inv, sku, stock=5, price=100)
        inv.reservations.reserve(f"user{n}", {sku: 1}, ttl_seconds=10 + n // 2)  # bucket by bucket
    clock.advance(20)
    assert inv.reservations.expire_due(batch_size=2, max_batches=1).expired == 2  # not 2 per bucket read
    assert inv.reservations.expire_due(batch_size=2).expired == 4
    assert [stock(inv, sku).held for sku in skus] == [0] * 6


def test_a_sku_listed_before_the_buckets_is_swept_and_moves_into_its_bucket(shop: Inventory, clock: ManualClock) -> None:
    """An upgrade: the previous version listed each SKU itself in the partition's index."""
    first = shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=10)
    shop.reservations.reserve("bob", {"A": 2}, ttl_seconds=30)
    part = shop.keys.of_sku("A")
    unlist(shop, "A")
    shop.redis.zadd(part.expiries, {f"{HOLDS_OF}A": first.expires_at.timestamp() * 1000})
    clock.advance(10)
    assert (shop.reservations.expire_due().expired, stock(shop, "A").held) == (1, 2)
    assert f"{HOLDS_OF}A" not in index(shop, "A")  # gone from the partition's index...
    assert listed_at(shop, "A") == clock.now_ms() + 20_000  # ...and listed in its bucket instead
    clock.advance(20)
    assert shop.reservations.expire_due().expired == 1 and stock(shop, "A").held == 0


def test_a_bucket_listed_early_is_moved_on_without_sweeping_anything(shop: Inventory, clock: ManualClock) -> None:
    shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=60)
    part = shop.keys.of_sku("A")
    bucket_member = f"{HOLDS_IN}{part.index_number('A')}"
    shop.redis.zadd(part.expiries, {bucket_member: clock.now_ms() - 1})  # earlier than its SKU's
    result = shop.reservations.expire_due()
    assert (result.expired, result.batches) == (0, len(shop.keys.parts))  # one pass each: it did not stay due
    assert index(shop, "A") == {bucket_member: clock.now_ms() + 60_000} and stock(shop, "A").held == 1


def test_an_unknown_bucket_number_is_logged_and_skipped(shop: Inventory, clock: ManualClock,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    part = shop.keys.of_sku("A")
    shop.redis.zadd(part.expiries, {f"{HOLDS_IN}{part.index_buckets}": 0, f"{HOLDS_IN}x": 0})
    shop.reservations.reserve("alice", {"A": 1}, ttl_seconds=10)
    clock.advance(10)
    assert shop.reservations.expire_due().expired == 1
    assert "no such bucket" in caplog.text
    assert index(shop, "A") == {}  # dropped, not read again on every pass
