"""Waitlist hand-off under concurrent joins, leaves, claims, lapses and returns (real processes), on one
SKU and on a SKU split into stock buckets (units come back to every bucket; the queue is bucket 0's)."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter

import pytest
from concurrent.futures import ProcessPoolExecutor

from inventory import Inventory
from inventory.holds import read_open_holds
from tests.concurrency.workers import release_slowly, sweep_for, wait_in_line
from tests.helpers import assert_invariant, make_product, stock

UNITS, BUYERS, CLAIM, PARTITIONS = 40, 3 * 30, 1, 8


@pytest.mark.parametrize("buckets", [1, 4])
def test_returned_units_reach_waiting_buyers_exactly_once_and_none_is_lost(real_inv: Inventory, buckets: int) -> None:
    settings = real_inv.settings.with_overrides(waitlist_claim_seconds=CLAIM, redis_partitions=PARTITIONS)
    live = Inventory.from_settings(settings)
    make_product(live, "WL", stock=UNITS)
    if buckets > 1:
        live.buckets.split("WL", buckets)
    holders = [live.reservations.reserve(f"holder-{n}", {"WL": 1}, ttl_seconds=600).id for n in range(UNITS)]
    if buckets > 1:
        assert len({line.sku for r in holders for line in live.reservations.get(r).lines}) == 1
        held_in = [int(live.redis.hget(live.keys.sku(b).stock, "held") or 0)
                   for b in live.buckets.layout("WL", fresh=True).buckets]
        assert sum(1 for held in held_in if held) == buckets  # the units come back to every bucket
    url, prefix = real_inv.settings.redis_url, real_inv.keys.prefix
    groups = [[f"waiter-{g}-{n}" for n in range(BUYERS // 3)] for g in range(3)]
    with ProcessPoolExecutor(max_workers=5, mp_context=multiprocessing.get_context("spawn")) as pool:
        waiters = [pool.submit(wait_in_line, url, prefix, "WL", users, seed, CLAIM, PARTITIONS)
                   for seed, users in enumerate(groups)]
        time.sleep(1.0)  # let the queue form before units come back
        returner = pool.submit(release_slowly, url, prefix, holders, 2.0, PARTITIONS)
        sweeper = pool.submit(sweep_for, url, prefix, 8.0, PARTITIONS, CLAIM)  # the whole pass
        outcomes = [row for waiter in waiters for row in waiter.result()]
        assert returner.result() == UNITS
        sweeper.result()
    time.sleep(CLAIM + 0.2)
    live.sweep()  # the last offers lapsed; nobody is left waiting for them

    kinds = Counter(outcome.split(":")[0] for _, outcome, _ in outcomes)
    claimed = [rid for _, outcome, rid in outcomes if outcome == "claimed"]
    print(f"\nwaitlist hand-off: {dict(kinds)}")
    assert len(claimed) == len(set(claimed)), "a unit was offered (and claimed) twice"
    assert set(kinds) <= {"claimed", "left", "lapsing", "still_waiting", "reservation_expired"}, kinds
    assert kinds["claimed"] > 0 and kinds["lapsing"] > 0 and kinds["left"] > 0
    for rid in claimed:
        assert live.reservations.get(rid).status.value == "held"
    level = stock(live, "WL")
    assert_invariant(level)
    for bucket in live.buckets.layout("WL", fresh=True).buckets or ["WL"]:  # each bucket exact on its own
        keys = live.keys.sku(bucket)
        total, avail, held, sold = (int(v) for v in live.redis.hmget(keys.stock, "total", "avail", "held", "sold"))
        assert avail + held + sold == total and min(avail, held, sold) >= 0, bucket
        assert sum(hold[1] for hold in read_open_holds(live.redis, keys)) == held, bucket
    # Nothing lost: every unit is either a claimed reservation, offered to someone still waiting, or
    # available because nobody waits any more.
    summary = live.waitlists.summary("WL")
    assert level.held == len(claimed) + sum(e.units for e in summary.head if e.status == "offered") \
        + summary.units_set_aside
    assert level.available == UNITS - level.held
    if summary.waiting == 0:
        assert summary.units_set_aside == 0
