"""One hot SKU on a 3-master Redis Cluster, unsplit (B = 1) and split into stock buckets (B = 3, 6).

    .venv/bin/python -m bench.buckets [--smoke]

Each phase seeds its own SKU with `units` (without a per-user limit, then with a limit of 2, which
adds a quota line to every request: one script call when the user's quota partition holds a bucket,
always with B = 16, one bucket per partition), splits it into B buckets (inventory/buckets.py) and
sells it out with `attempts` reserves (one unit, a fresh user each) from 4 processes x 8 threads through
the core (`Inventory.reservations.reserve`), while the parent rebalances every 0.5 s as the sweeper
does. Recorded per phase: throughput, sell-out time (start to the last unit held), per-shard script
calls (INFO commandstats before and after: max / mean across the shards), sold-out answers given while
some bucket still had the unit (the router's own count: false sold-outs), and the final counters (0
oversell, 0 undersell). On this 2-core machine the client processes and the three redis-servers share
the cores, so wall-clock throughput cannot grow with shards; the per-shard counts say what would.
"""

from __future__ import annotations

import multiprocessing
import platform
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from bench.cluster import shard_delta, snapshot, start_cluster, wipe_prefix
from bench.solo import main, parser, write_json
from bench.suite import Context
from inventory import Inventory, Settings
from inventory.errors import InventoryError, SoldOut
from inventory.store import connect_redis

NAME = "buckets"
PREFIX = "fb"
PROCESSES = 4
THREADS = 8
PHASES = ((1, 0), (3, 0), (6, 0), (1, 2), (6, 2), (16, 2))  # (buckets, per-user limit); 16 = every partition


def _settings(url: str) -> Settings:
    return Settings(key_prefix=PREFIX, redis_url=url, redis_max_connections=64, redis_timeout_seconds=30)


def _worker(url: str, sku: str, first: int, n: int, barrier: Any, results: Any) -> None:
    """One process: n reserves of one unit by fresh users from THREADS threads after the barrier."""
    inv = Inventory(connect_redis(_settings(url)), _settings(url))
    counts = {"ok": 0, "sold_out": 0, "other": 0}
    last_ok = [0.0]
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            inv.reservations.reserve(f"u{i:010d}", {sku: 1})
            outcome = "ok"
        except SoldOut:
            outcome = "sold_out"
        except InventoryError:
            outcome = "other"
        with lock:
            counts[outcome] += 1
            if outcome == "ok":
                last_ok[0] = time.monotonic()

    barrier.wait(120)
    start = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(first, first + n)))
    results.put({**counts, "start": start, "end": time.monotonic(), "last_ok": last_ok[0],
                 "false_sold_out": inv.buckets.refused_with_stock})


def run_phase(url: str, ports: list[int], sku: str, buckets: int, limit: int, units: int, attempts: int) -> dict:
    """Seed, split, sell out with a rebalancing parent; the phase's figures and counter checks."""
    inv = Inventory(connect_redis(_settings(url)), _settings(url))
    inv.catalog.configure(sku, name=sku, price=100, per_user_limit=limit)
    inv.catalog.adjust_stock(sku, set_total=units, reason="seed")
    if buckets > 1:
        inv.buckets.split(sku, buckets)
    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(PROCESSES + 1), mp.Queue()
    share = attempts // PROCESSES
    workers = [mp.Process(target=_worker, args=(url, sku, i * 10**8, share, barrier, results), daemon=True)
               for i in range(PROCESSES)]
    for w in workers:
        w.start()
    stop = threading.Event()
    moved = [0]

    def rebalance() -> None:
        while not stop.wait(0.5):
            moved[0] += inv.buckets.rebalance_all()

    before = snapshot(ports)
    sweeper = threading.Thread(target=rebalance, daemon=True)
    barrier.wait(120)
    sweeper.start()
    got = [results.get(timeout=900) for _ in workers]
    stop.set()
    sweeper.join()
    for w in workers:
        w.join(10)
    after = snapshot(ports)
    start = min(g["start"] for g in got)
    wall = max(g["end"] for g in got) - start
    answers = sum(g["ok"] + g["sold_out"] + g["other"] for g in got)
    ok, sold_out = sum(g["ok"] for g in got), sum(g["sold_out"] for g in got)
    false_sold_out = sum(g["false_sold_out"] for g in got)
    shards = shard_delta(before, after, answers)
    level = inv.catalog.get(sku).stock
    failures = []
    if ok != units or level.held != units or level.available != 0:
        failures.append(f"{sku}: {ok} held of {units} units (counters {level})")
    calls = [s["scripts"] for s in shards["shards"].values()]
    mean = sum(calls) / len(calls) if calls else 0
    return {
        "sku": sku, "buckets": buckets, "per_user_limit": limit, "units": units, "attempts": answers,
        "ok": ok, "sold_out": sold_out, "other": sum(g["other"] for g in got),
        "false_sold_out": false_sold_out, "false_sold_out_rate": round(false_sold_out / max(answers, 1), 5),
        "wall_s": round(wall, 3), "answers_per_s": round(answers / wall, 1),
        "sell_out_s": round(max(g["last_ok"] for g in got) - start, 3),
        "units_moved_by_rebalance": moved[0],
        "shard_scripts": calls, "max_over_mean_scripts": round(max(calls) / mean, 3) if mean else None,
        "scripts_per_answer": shards["scripts_per_answer"], "shards": shards,
        "final": {"total": level.total, "available": level.available, "held": level.held, "sold": level.sold},
        "failures": failures,
    }


def run(ctx: Context) -> dict:
    units, attempts = (400, 1200) if ctx.smoke else (20_000, 60_000)
    cluster = start_cluster(ctx.tmp)
    try:
        ports = cluster.masters()
        phases = [run_phase(cluster.url, ports, f"HOT-B{b}-L{limit}", b, limit, units, attempts)
                  for b, limit in PHASES]
        wipe_prefix(ports, PREFIX)
    finally:
        cluster.stop()
    base = phases[0]["answers_per_s"]  # B = 1 without a limit
    summary = [f"B={p['buckets']} limit={p['per_user_limit']}: {p['answers_per_s']:.0f} answers/s "
               f"({p['answers_per_s'] / base:.2f}x B=1), sell-out {p['sell_out_s']} s, per-shard scripts "
               f"{p['shard_scripts']} (max/mean {p['max_over_mean_scripts']}), false sold-out "
               f"{p['false_sold_out']} ({p['false_sold_out_rate']:.3%}), final {p['final']}" for p in phases]
    result = {
        "scenario": NAME, "smoke": ctx.smoke, "processes": PROCESSES, "threads": THREADS,
        "versions": {"python": platform.python_version(), "redis_py": redis.__version__},
        "phases": phases, "summary": summary,
        "failures": [f for p in phases for f in p["failures"]],
    }
    write_json(ctx, NAME, result)
    return result


if __name__ == "__main__":
    raise SystemExit(main(NAME, run, parser("python -m bench.buckets", __doc__ or "").parse_args()))
