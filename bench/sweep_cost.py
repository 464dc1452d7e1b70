"""The expiry sweep's cost per expired hold, this code against an earlier git revision, same Redis.

    .venv/bin/python -m bench.sweep_cost --rev f4b9708 [--holds 5000] [--rounds 4] [--label L]

Each round runs one child process per variant, alternating which goes first: the child takes `holds`
one-unit holds by distinct users through the core with a short time to live, in two layouts ("hot": all
on one SKU; "spread": one per SKU), waits until they are due, then times one `expire_due()` and reads
Redis's own EVALSHA time and calls (INFO commandstats deltas). The old variant runs from a `git
worktree` of `rev` with this same file copied in, so both use only the core's public calls. Every child
checks that each hold came back (held 0, available = stock) and deletes its own key prefix.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent


def _evalsha(client: redis.Redis) -> tuple[int, int]:
    """(calls, µs) of EVALSHA so far on this server."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def child(layout: str, holds: int, redis_url: str) -> dict[str, Any]:
    """Take the holds, let them expire, time one sweep (run in the variant's own checkout)."""
    from bench.solo import delete_prefix
    from inventory import Inventory, Settings

    client = redis.Redis.from_url(redis_url)
    prefix = f"bsw{uuid.uuid4().hex[:8]}"
    inv = Inventory(client, Settings(key_prefix=prefix, sweep_batch_size=500))
    skus = ["HOT"] if layout == "hot" else [f"S{i:06d}" for i in range(holds)]
    try:
        for sku in skus:
            inv.catalog.configure(sku, name=f"Product {sku}", price=100, currency="USD", per_user_limit=2)
            inv.catalog.adjust_stock(sku, set_total=holds if layout == "hot" else 1, reason="seed")
        ttl = 2 + holds // 1000  # longer than taking them all, or lazy expiry would return some first
        for i in range(holds):
            inv.reservations.reserve(f"u{i:012d}", {skus[i % len(skus)]: 1}, ttl_seconds=ttl)
        time.sleep(ttl + 0.2)  # the last hold is due
        calls0, us0 = _evalsha(client)
        started = time.perf_counter()
        result = inv.reservations.expire_due(max_batches=10_000)
        elapsed = time.perf_counter() - started
        calls1, us1 = _evalsha(client)
        levels = [inv.catalog.get(sku).stock for sku in skus[:50]]
        back = all(level.held == 0 and level.available == level.total for level in levels)
        return {"layout": layout, "holds": holds, "sweep_s": elapsed, "units_returned": result.units_returned,
                "script_calls": calls1 - calls0, "redis_us": us1 - us0, "all_back": back}
    finally:
        delete_prefix(client, prefix)


def _run_child(cwd: Path, layout: str, holds: int, redis_url: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.sweep_cost", "--child", layout, "--holds", str(holds),
                          "--redis-url", redis_url], cwd=cwd, check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(cwd)})
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if row["units_returned"] != holds or not row["all_back"]:
        raise AssertionError(f"{cwd}: {row}")
    return row


def run(rev: str, holds: int, rounds: int, redis_url: str) -> dict[str, Any]:
    """Alternating rounds of both variants in both layouts; ratios new/old per round and medians."""
    out: dict[str, Any] = {"old_rev": rev, "holds": holds, "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), rev], cwd=REPO, check=True,
                       capture_output=True)
        try:
            (old / "bench" / "sweep_cost.py").write_text(Path(__file__).read_text())
            for i in range(rounds):
                row: dict[str, Any] = {"round": i}
                for layout in ("hot", "spread"):
                    order = [("new", REPO), ("old", old)] if i % 2 == 0 else [("old", old), ("new", REPO)]
                    got = {name: _run_child(cwd, layout, holds, redis_url) for name, cwd in order}
                    row[layout] = {**got, "ratio_wall": got["new"]["sweep_s"] / got["old"]["sweep_s"],
                                   "ratio_redis_us": got["new"]["redis_us"] / got["old"]["redis_us"]}
                    print(f"round {i} {layout}: new/old wall {row[layout]['ratio_wall']:.3f}, redis µs "
                          f"{row[layout]['ratio_redis_us']:.3f}, script calls {got['new']['script_calls']} vs "
                          f"{got['old']['script_calls']}", flush=True)
                out["rounds"].append(row)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, check=False,
                           capture_output=True)
    for layout in ("hot", "spread"):
        out[f"median_ratio_wall_{layout}"] = statistics.median(r[layout]["ratio_wall"] for r in out["rounds"])
        out[f"median_ratio_redis_us_{layout}"] = statistics.median(
            r[layout]["ratio_redis_us"] for r in out["rounds"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", help="the git revision of the old version")
    parser.add_argument("--holds", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--label", default="")
    parser.add_argument("--child", choices=["hot", "spread"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.holds, args.redis_url)))
        return
    if not args.rev:
        parser.error("--rev is required")
    result = run(args.rev, args.holds, args.rounds, args.redis_url)
    name = f"sweep_cost{'_' + args.label if args.label else ''}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"median new/old: hot wall {result['median_ratio_wall_hot']:.3f} redis {result['median_ratio_redis_us_hot']:.3f};"
          f" spread wall {result['median_ratio_wall_spread']:.3f} redis {result['median_ratio_redis_us_spread']:.3f}"
          f" -> bench/results/{name}")


if __name__ == "__main__":
    main()
