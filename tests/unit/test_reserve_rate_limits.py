"""Rate-limit buckets counted in the same script call as the hold (one round trip, atomic) on one node,
and in one pipelined round trip before it on a cluster (the buckets live in other slots): same answers."""

from __future__ import annotations

import pytest
import redis

from inventory import Inventory, Settings
from inventory.errors import InvalidArgument, RateLimited, SoldOut
from inventory.models import RateLimit
from tests.clocks import ManualClock
from tests.helpers import assert_invariant, make_product, stock
from tests.unit.test_scripts import ClusterLike


@pytest.fixture(params=["node", "cluster-paths"])
def inv(request: pytest.FixtureRequest, any_redis: redis.Redis, settings: Settings, clock: ManualClock) -> Inventory:
    return (ClusterLike if request.param == "cluster-paths" else Inventory)(any_redis, settings, clock)


def _buckets(inv: Inventory, user_limit: int = 2, ip_limit: int = 100) -> list[RateLimit]:
    return [RateLimit(inv.keys.scoped("rl:user"), user_limit, 60, f"{user_limit} per 1 minute"),
            RateLimit(inv.keys.scoped("rl:ip"), ip_limit, 1, f"{ip_limit} per 1 second")]


def test_each_call_counts_once_per_bucket_and_the_window_expires(inv: Inventory, any_redis: redis.Redis) -> None:
    make_product(inv, stock=10)
    buckets = _buckets(inv)
    inv.reservations.reserve("alice", {"HOT": 1}, rate_limits=buckets)
    assert [int(any_redis.get(b.key)) for b in buckets] == [1, 1]
    assert 0 < any_redis.ttl(buckets[0].key) <= 60 and 0 < any_redis.pttl(buckets[1].key) <= 1000


def test_over_the_limit_is_refused_with_retry_after_and_holds_nothing(inv: Inventory) -> None:
    make_product(inv, stock=10)
    buckets = _buckets(inv, user_limit=2)
    for _ in range(2):
        inv.reservations.reserve("alice", {"HOT": 1}, rate_limits=buckets)
    with pytest.raises(RateLimited) as refused:
        inv.reservations.reserve("alice", {"HOT": 1}, rate_limits=buckets)
    assert refused.value.details["limit"] == "2 per 1 minute"
    assert 0 < refused.value.details["retry_after_ms"] <= 60_000
    level = stock(inv)
    assert (level.available, level.held) == (8, 2)
    assert_invariant(level)


def test_a_refusal_by_the_second_bucket_names_it(inv: Inventory) -> None:
    make_product(inv, stock=10)
    buckets = _buckets(inv, user_limit=100, ip_limit=1)
    inv.reservations.reserve("alice", {"HOT": 1}, rate_limits=buckets)
    with pytest.raises(RateLimited) as refused:
        inv.reservations.reserve("bob", {"HOT": 1}, rate_limits=buckets)
    assert refused.value.details["limit"] == "1 per 1 second"


def test_sold_out_and_other_refusals_still_count(inv: Inventory) -> None:
    make_product(inv, stock=0)
    buckets = _buckets(inv, user_limit=1)
    with pytest.raises(SoldOut):
        inv.reservations.reserve("alice", {"HOT": 1}, rate_limits=buckets)
    with pytest.raises(RateLimited):
        inv.reservations.reserve("alice", {"HOT": 1}, rate_limits=buckets)


def test_without_buckets_nothing_is_counted(inv: Inventory, any_redis: redis.Redis) -> None:
    make_product(inv, stock=1)
    inv.reservations.reserve("alice", {"HOT": 1})
    assert not any_redis.keys(inv.keys.scoped("rl:*"))


def test_malformed_bucket_arguments_change_nothing(inv: Inventory, any_redis: redis.Redis) -> None:
    make_product(inv, stock=5)
    bad = [RateLimit(inv.keys.scoped("rl:user"), 5, 0)]
    with pytest.raises(InvalidArgument):
        inv.reservations.reserve("alice", {"HOT": 1}, rate_limits=bad)
    assert any_redis.get(bad[0].key) is None
    assert stock(inv).available == 5


def test_a_reserve_that_sweeps_due_hold_buckets_and_tries_again_counts_once(inv: Inventory, any_redis: redis.Redis,
                                                                           clock: ManualClock) -> None:
    """A busy SKU's expired holds in other hold buckets: the refused first call, the sweep and the second
    call are one request to the rate limits."""
    make_product(inv, stock=40)
    for held in [inv.reservations.reserve(f"crowd{n}", {"HOT": 1}) for n in range(17)]:
        inv.reservations.release(held.id)  # busy for good: every later hold is in a hold bucket
    for n in range(40):
        inv.reservations.reserve(f"gone{n}", {"HOT": 1}, ttl_seconds=1)
    clock.advance(2)
    buckets = _buckets(inv, user_limit=5)
    inv.reservations.reserve("alice", {"HOT": 3}, rate_limits=buckets)
    assert [int(any_redis.get(b.key)) for b in buckets] == [1, 1]
    level = stock(inv)
    assert (level.available, level.held) == (37, 3)
    assert_invariant(level)
