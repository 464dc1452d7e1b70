"""A split SKU sold out by real processes while its buckets are rebalanced and resized: exact counts,
no user above the limit, no bucket below zero, every unit sold (real redis-server and Redis Cluster)."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

from inventory import Inventory
from tests.concurrency.workers import reserve_many
from tests.helpers import assert_invariant, make_product, stock

PROCESSES = 4
THREADS = 16
PARTITIONS = 8


def _race(real_inv: Inventory, units: int, users: int, tries: int, limit: int):  # noqa: ANN202
    """Every user tries `tries` times from 4 processes x 16 threads while the admin thread rebalances and
    resizes; returns (outcome counts, units held per user, the split inventory, bucket minima seen)."""
    inv = Inventory(real_inv.redis, real_inv.settings.with_overrides(redis_partitions=PARTITIONS), None)
    make_product(inv, "HOT", stock=units, limit=limit)
    inv.buckets.split("HOT", 4)
    attempts = [(f"user-{n % users}", {"HOT": 1}) for n in range(users * tries)]
    batches = [attempts[i::PROCESSES] for i in range(PROCESSES)]
    stop = threading.Event()
    seen_levels: list[list[int]] = []

    def admin() -> None:  # rebalances and live resizes while the sale runs
        sizes = iter([6, 3, 5])
        while not stop.is_set():
            inv.buckets.rebalance_all()
            seen_levels.append([int(inv.redis.hget(inv.keys.sku(b).stock, "avail") or 0)
                                for b in inv.buckets.layout("HOT", fresh=True).buckets])
            size = next(sizes, None)
            if size:
                inv.buckets.split("HOT", size)
            stop.wait(0.02)

    watcher = threading.Thread(target=admin)
    watcher.start()
    try:
        with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(reserve_many, inv.settings.redis_url, inv.keys.prefix, batch, THREADS,
                                   PARTITIONS) for batch in batches]
            results = [future.result() for future in futures]
    finally:
        stop.set()
        watcher.join()
    held_by: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for batch, rows in zip(batches, results):
        for (user, _), (code, _, _) in zip(batch, rows):
            outcomes[code] += 1
            held_by[user] += code == "ok"
    print(f"\nsplit SKU: {sum(outcomes.values())} attempts, {outcomes}, {len(seen_levels)} rebalances")
    assert min(min(levels) for levels in seen_levels) >= 0
    return outcomes, held_by, inv


def test_split_sku_sells_exactly_its_stock_while_rebalanced_and_resized(real_inv: Inventory) -> None:
    units, limit = 300, 2
    outcomes, held_by, inv = _race(real_inv, units, users=400, tries=4, limit=limit)
    assert outcomes["ok"] == units
    assert set(outcomes) <= {"ok", "sold_out", "limit_exceeded"}
    assert max(held_by.values()) <= limit
    level = stock(inv)
    assert (level.total, level.available, level.held) == (units, 0, units)
    assert_invariant(level)
    assert_buckets_exact(inv)


def test_no_user_goes_above_the_limit_whichever_buckets_serve_them(real_inv: Inventory) -> None:
    outcomes, held_by, inv = _race(real_inv, 1000, users=100, tries=6, limit=2)
    assert outcomes == {"ok": 200, "limit_exceeded": 400}
    assert set(held_by.values()) == {2}
    level = stock(inv)
    assert (level.total, level.available, level.held) == (1000, 800, 200)
    assert_buckets_exact(inv)


def assert_buckets_exact(inv: Inventory) -> None:
    for bucket in inv.buckets.layout("HOT", fresh=True).buckets:
        f = {k.decode(): int(v) for k, v in inv.redis.hgetall(inv.keys.sku(bucket).stock).items()
             if k.decode() in ("total", "avail", "held", "sold")}
        assert f["avail"] + f["held"] + f["sold"] == f["total"] and min(f.values()) >= 0, (bucket, f)
