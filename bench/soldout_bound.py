"""How fast every API process hears that units came back: the sold-out cache's bound, measured.

    .venv/bin/python -m bench.soldout_bound [--smoke] [--processes 4] [--rounds 200]

Target (issue 13): every API process sees a returned unit within 100 ms. The test command runs a small
size on the test servers as a correctness check only (tests/concurrency/test_soldout_bound.py). Each watcher process holds what an API worker holds (an Inventory, its sold-out cache and
the listener) and learns that a SKU is sold out; the main process then releases one unit and every
watcher times how long until its cache forgets the SKU (wall clock on one host, ms after the release).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import time
from typing import Any

from bench.solo import main, parser, write_json

from inventory.config import Settings
from inventory.engine import Inventory
from inventory.errors import InventoryError
from inventory.soldout import SoldOutCache, SoldOutListener
from inventory.store import masters

SKU = "SOLDOUT-PROBE"


def watch(settings: Settings, rounds: int, ready: Any, go: Any, seen: Any, out: Any) -> None:
    """One watcher process: per round, learn the sold-out, wait for the release, time the forgetting."""
    inv = Inventory.from_settings(settings)
    cache = SoldOutCache(settings.soldout_cache_ttl_ms, lambda sku: inv.keys.sku(sku).stock)
    inv.reservations.soldout = cache
    listener = SoldOutListener(cache, lambda: masters(inv.redis)[0], inv.keys.stock_pattern)
    listener.ensure_started()
    deadline = time.monotonic() + 10
    while not cache.listening and time.monotonic() < deadline:
        time.sleep(0.01)
    delays = []
    for _ in range(rounds):
        while not cache.knows(SKU):
            cache.clear()  # what it learned while the released unit was still free says 'available 1'
            try:
                inv.reservations.reserve("watcher", {SKU: 2}, ttl_seconds=3600)  # more than there ever is
            except InventoryError:
                pass
        ready.put(1)
        released_at = go.get()
        while cache.knows(SKU):
            time.sleep(0.0002)
        delays.append((time.time() - released_at) * 1000)
        seen.put(1)
    listener.stop()
    out.put(delays)


def measure(settings: Settings, *, processes: int, rounds: int) -> list[list[float]]:
    """Per watcher process, the ms from each release until its cache let the unit be sold."""
    inv = Inventory.from_settings(settings)
    inv.catalog.configure(SKU, name="sold-out probe", price=1, currency="USD")
    inv.catalog.adjust_stock(SKU, set_total=1, reason="seed")
    held = inv.reservations.reserve("holder", {SKU: 1}, ttl_seconds=3600)
    mp = multiprocessing.get_context("spawn")
    ready, seen, out = mp.Queue(), mp.Queue(), mp.Queue()
    gos = [mp.Queue() for _ in range(processes)]
    watchers = [mp.Process(target=watch, args=(settings, rounds, ready, go, seen, out), daemon=True) for go in gos]
    for watcher in watchers:
        watcher.start()
    try:
        for _ in range(rounds):
            for _ in range(processes):
                ready.get(timeout=60)
            released_at = time.time()
            inv.reservations.release(held.id)
            for go in gos:
                go.put(released_at)
            for _ in range(processes):
                seen.get(timeout=60)
            held = inv.reservations.reserve("holder", {SKU: 1}, ttl_seconds=3600)  # sold out again
        return [out.get(timeout=60) for _ in watchers]
    finally:
        for watcher in watchers:
            watcher.join(timeout=10)
            if watcher.is_alive():
                watcher.kill()


NAME = "soldout_bound"


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"n": len(ordered), "p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 2)}


def run(ctx: Any) -> dict:
    """Scenario entry point (bench/suite.py contract): a private redis-server, watcher processes."""
    processes = getattr(ctx.args, "processes", None) or (2 if ctx.smoke else 4)
    rounds = getattr(ctx.args, "rounds", None) or (10 if ctx.smoke else 200)
    settings = Settings(redis_url=f"redis://127.0.0.1:{ctx.redis_port}/0", key_prefix="fssoldout",
                        soldout_cache_ttl_ms=60_000)  # only the announcement can make a watcher forget
    per_process = measure(settings, processes=processes, rounds=rounds)
    every = [max(delays) for delays in zip(*per_process)]  # per release: until the LAST process heard
    result = {
        "scenario": NAME, "smoke": ctx.smoke, "processes": processes, "rounds": rounds,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "all_processes_ms": percentiles(every),
        "per_process_ms": [percentiles(delays) for delays in per_process],
        "target_ms": 100,
    }
    result["met"] = result["all_processes_ms"]["max"] <= 100
    result["summary"] = [
        f"{processes} API processes x {rounds} releases: every process saw the returned unit after "
        f"p50 {result['all_processes_ms']['p50']} ms, p99 {result['all_processes_ms']['p99']} ms, "
        f"max {result['all_processes_ms']['max']} ms (target <= 100 ms: {'met' if result['met'] else 'missed'})"]
    write_json(ctx, NAME, result)
    return result


if __name__ == "__main__":
    p = parser("python -m bench.soldout_bound", __doc__ or "")
    p.add_argument("--processes", type=int, default=None, help="watcher processes (default 4; smoke 2)")
    p.add_argument("--rounds", type=int, default=None, help="releases (default 200; smoke 10)")
    raise SystemExit(main(NAME, run, p.parse_args()))
