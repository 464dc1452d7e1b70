"""Script hygiene: headers, cluster slots, no key names built in Lua, survival of SCRIPT FLUSH."""

from __future__ import annotations

import re
import time
from collections import defaultdict

import fakeredis
import pytest
from redis.crc import key_slot

from inventory import Inventory, Settings
from inventory.keys import HOLDS_IN, KeySpace
from inventory.models import RateLimit
from tests.clocks import ManualClock
from inventory.sale_admin import set_global_pause
from inventory.scripts import Scripts, load_sources
from tests.helpers import assert_invariant, make_product, stock

SCRIPT_NAMES = {"reserve", "amend", "release", "checkout", "record_payment", "configure_product", "adjust_stock",
                "set_sale_switch", "pin_part", "abort_checkout", "attach_parts", "extend", "join_waitlist",
                "offer_waitlist", "leave_waitlist", "claim_offer", "transfer_stock", "sweep_holds", "prune_records",
                "reindex_bucket", "raise_buyer_units"}


def test_every_operation_has_one_script_with_a_full_header() -> None:
    sources = load_sources()
    assert set(sources) == SCRIPT_NAMES
    for src in sources.values():
        header = src.source.split("]]", 1)[0]
        assert header.startswith("--[["), src.filename
        assert re.search(r"KEYS\[1\]", header) and re.search(r"ARGV(\[1\]| +none$)", header, re.M), src.filename
        assert "Returns" in header and "Invariant" in header, src.filename
        assert re.match(r"^[a-z_]+-[0-9+nm]+\.lua$", src.filename), src.filename
        assert not re.search(r"^--@include", src.source, re.M), "includes are spliced by the loader"


def test_scripts_never_build_key_names() -> None:
    for src in load_sources().values():
        body = src.source.split("]]", 1)[1]
        assert not re.search(r"\{p\d", body) and ":r:" not in body and ":outbox" not in body, src.filename


def same_partition_skus(keys: KeySpace, count: int, *, avoid: int | set[int] | None = None) -> list[str]:
    """`count` SKU names that live in one partition (none of `avoid`)."""
    avoid = {avoid} if isinstance(avoid, int) else (avoid or set())
    by_part: dict[int, list[str]] = defaultdict(list)
    for n in range(10_000):
        sku = f"S{n}"
        part = keys.partition_of(sku)
        if part not in avoid:
            by_part[part].append(sku)
            if len(by_part[part]) == count:
                return by_part[part]
    raise AssertionError("no partition found")


def skus_in_distinct_partitions(keys: KeySpace, count: int) -> list[str]:
    """`count` SKU names, each in a partition none of the others is in, sorted (the first is a basket's home)."""
    skus: list[str] = []
    for _ in range(count):
        (sku,) = same_partition_skus(keys, 1, avoid={keys.partition_of(s) for s in skus})
        skus.append(sku)
    return sorted(skus)


class ClusterLike(Inventory):
    """An Inventory that takes the cluster's paths (rate limits counted apart) on a single server."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.ctx.cluster = True


@pytest.mark.parametrize("cluster_paths", [False, True], ids=["node", "cluster-paths"])
def test_every_script_call_touches_one_cluster_slot(
    any_redis, settings: Settings, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, cluster_paths: bool
) -> None:
    calls: list[tuple[str, list[str]]] = []
    original = Scripts.call

    def recording(self, name, keys, args, client=None):  # noqa: ANN001
        calls.append((name, list(keys)))
        return original(self, name, keys, args, client)

    monkeypatch.setattr(Scripts, "call", recording)
    inv = (ClusterLike if cluster_paths else Inventory)(any_redis, settings.with_overrides(redis_partitions=8), clock)
    a, b = same_partition_skus(inv.keys, 2)
    c, d = same_partition_skus(inv.keys, 2, avoid=inv.keys.partition_of(a))
    (e,) = same_partition_skus(inv.keys, 1, avoid={inv.keys.partition_of(a), inv.keys.partition_of(c)})
    for sku in (a, b, c, d, e):
        make_product(inv, sku, stock=10)
    limits = [RateLimit(inv.keys.scoped("rl:u"), 100, 60), RateLimit(inv.keys.scoped("rl:ip"), 100, 60)]
    held = inv.reservations.reserve("alice", {a: 1, b: 2}, rate_limits=limits)
    inv.reservations.amend(held.id, {a: 2}, user_id="alice")
    inv.reservations.extend(held.id, seconds=300, extension_id="x1")
    order = inv.reservations.checkout(held.id)
    inv.reservations.record_payment(event_id="e", result="paid", order_id=order.id)
    other = inv.reservations.reserve("bob", {c: 1})
    inv.reservations.release(other.id)
    inv.reservations.reserve("carol", {c: 1}, ttl_seconds=1)
    clock.advance(2)
    inv.reservations.expire_due()
    part_c = inv.keys.of_sku(c)
    inv.redis.zadd(part_c.expiries, {f"{HOLDS_IN}{part_c.index_number(c)}": 0})  # listed early: moved on
    inv.reservations.expire_due()
    inv.catalog.adjust_stock(c, add=1)
    set_global_pause(inv, False)
    make_product(inv, "W", stock=1)
    frank = inv.reservations.reserve("frank", {"W": 1})
    inv.waitlists.join("W", "gina", 1)
    inv.reservations.release(frank.id)  # the unit is set aside for gina
    assert inv.waitlists.get("W", "gina").status == "offered"
    inv.waitlists.claim("W", "gina")
    inv.waitlists.join("W", "hank", 1)
    inv.waitlists.leave("W", "hank")
    make_product(inv, "S", stock=6, limit=2)
    inv.reservations.reserve("judy", {"S": 1})  # a buyer whose units the split copies into her quota
    inv.buckets.split("S", 3)  # buckets and quotas in other partitions; units moved into them
    inv.reservations.release(inv.reservations.reserve("ivan", {"S": 2}).id)
    inv.sweep()
    single = {name for name, _ in calls}
    basket = inv.reservations.reserve("dave", {a: 1, c: 1}, rate_limits=limits)  # two partitions: two parts
    basket = inv.reservations.amend(basket.id, {e: 1}, user_id="dave")  # a third partition: a new part
    inv.reservations.extend(basket.id, seconds=300, extension_id="x1")  # every part's hold
    inv.reservations.checkout(basket.id)
    inv.reservations.extend(basket.id, seconds=1000, extension_id="x2")  # the home's payment deadline
    stalled = inv.reservations.reserve("erin", {b: 1, d: 1}, ttl_seconds=60)
    monkeypatch.setattr(inv.reservations.calls, "checkout", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # the process dies after pinning the other part
        inv.reservations.checkout(stalled.id)
    monkeypatch.undo()
    monkeypatch.setattr(Scripts, "call", recording)
    clock.advance(61)
    inv.reservations.expire_due()  # resolves the pinned part at its home: abort, unpin, expire
    assert (stock(inv, c).sold, stock(inv, e).sold) == (1, 1)
    clock.advance(1001)
    inv.reservations.expire_due()  # the basket's payment deadline passed: every part's units go back

    assert single == SCRIPT_NAMES - {"pin_part", "abort_checkout", "attach_parts"}
    assert {name for name, _ in calls} == SCRIPT_NAMES
    for name, keys in calls:
        if name == "reserve" and len(keys) > 4 + 4 + 1 and keys[-2].startswith(inv.keys.scoped("rl")):
            keys = [k for k in keys if not k.startswith(inv.keys.scoped("rl"))]  # one node: reserve counts them
        assert len({key_slot(key.encode()) for key in keys}) == 1, (name, keys)
    for sku in (a, b, c, d, e):
        assert_invariant(stock(inv, sku))
    assert {(line.sku, line.qty) for line in inv.reservations.get(basket.id).lines} == {(a, 1), (c, 1), (e, 1)}
    assert (stock(inv, c).sold, stock(inv, e).sold) == (0, 0)
    assert inv.reservations.get(basket.id).status.value == "payment_expired"
    assert stock(inv, b).held == 0 and stock(inv, d).held == 0


def test_partition_tags_spread_evenly_over_the_slots() -> None:
    keys = KeySpace("fs", 16)
    slots = [key_slot(part.tag.encode()) for part in keys.parts]
    assert [slot * 16 // 16384 for slot in slots] == list(range(16))
    token = keys.token_in("0" * 27, 13)
    assert keys.of_token(token).index == 13 and keys.reservation(token).startswith(f"fs:{keys.parts[13].tag}:")


@pytest.fixture(params=["fakeredis", "own redis-server"])
def flushable_inv(request: pytest.FixtureRequest, settings: Settings, clock: ManualClock) -> Inventory:
    """SCRIPT FLUSH empties a whole server's script cache: never on the shared server."""
    if request.param == "fakeredis":
        return Inventory(fakeredis.FakeRedis(server=fakeredis.FakeServer()), settings, clock)
    return Inventory(request.getfixturevalue("own_redis").client, settings, clock)


def test_script_flush_between_calls_changes_nothing(flushable_inv: Inventory) -> None:
    inv = flushable_inv
    make_product(inv, stock=5)
    inv.reservations.reserve("alice", {"HOT": 1})
    inv.redis.script_flush()
    held = inv.reservations.reserve("bob", {"HOT": 2})
    inv.redis.script_flush()
    inv.reservations.checkout(held.id)
    level = stock(inv)
    assert (level.available, level.held, level.sold) == (2, 1, 2)


def test_a_lost_script_cache_runs_the_check_once_before_any_script_loads_again(flushable_inv: Inventory) -> None:
    inv = flushable_inv
    make_product(inv, stock=5)
    inv.reservations.reserve("alice", {"HOT": 1})
    seen: list[bool] = []

    def check() -> None:  # what check_before_loading does: it may run scripts itself (a rebuild)
        seen.append(inv.ctx.scripts.missing(["reserve"]))
        inv.reservations.reserve("inside-the-check", {"HOT": 1})

    inv.ctx.scripts.on_cache_lost = check
    inv.reservations.reserve("bob", {"HOT": 1})
    assert seen == []  # the cache is there: no check
    inv.redis.script_flush()  # a restart, a failover or an operator's SCRIPT FLUSH
    inv.reservations.reserve("carol", {"HOT": 1})
    inv.reservations.reserve("dave", {"HOT": 1})
    assert seen == [True]  # once, and before the reserve script was loaded again
    assert stock(inv).held == 5


def test_a_batch_on_a_server_without_its_scripts_waits_for_the_check(flushable_inv: Inventory) -> None:
    inv = flushable_inv
    make_product(inv, stock=5)
    calls: list[str] = []
    inv.ctx.scripts.on_cache_lost = lambda: calls.append("check")
    inv.redis.script_flush()
    batch = inv.ctx.script_batch()
    batch.call("adjust_stock", *inv.catalog.adjust_call("HOT", "add", 1, None, "restock"))
    replies = batch.execute()
    assert calls == ["check"] and not isinstance(replies[0], Exception)
    assert stock(inv).total == 6


def test_a_check_that_cannot_run_answers_unavailable_and_loads_nothing(flushable_inv: Inventory) -> None:
    from inventory.errors import Unavailable

    inv = flushable_inv
    make_product(inv, stock=5)

    def busy() -> None:
        raise Unavailable("Redis came back and its state is being checked; try again shortly.")

    inv.ctx.scripts.on_cache_lost = busy
    inv.redis.script_flush()
    with pytest.raises(Unavailable):
        inv.reservations.reserve("carol", {"HOT": 1})
    assert inv.ctx.scripts.missing(["reserve"]) and stock(inv).held == 0


def test_calls_that_waited_for_a_failed_check_fail_at_once_and_the_next_one_checks_again(
        flushable_inv: Inventory) -> None:
    from inventory.errors import Unavailable

    inv = flushable_inv
    make_product(inv, stock=5)
    scripts = inv.ctx.scripts
    attempts: list[str] = []

    def database_down() -> None:
        attempts.append("check")
        raise Unavailable("Redis came back and its state cannot be checked yet; try again shortly.")

    scripts.on_cache_lost = database_down
    inv.redis.script_flush()
    waited_since = time.monotonic()  # a call that met NOSCRIPT while the check below ran
    with pytest.raises(Unavailable):
        inv.reservations.reserve("carol", {"HOT": 1})
    with pytest.raises(Unavailable):
        scripts.cache_lost(waited_since)
    assert attempts == ["check"]  # it shared the failed check instead of running another
    scripts.on_cache_lost = lambda: attempts.append("check again")
    inv.reservations.reserve("dave", {"HOT": 1})  # a later call checks again, and this time sells
    assert attempts == ["check", "check again"] and stock(inv).held == 1
