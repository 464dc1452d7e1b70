"""A/B of one Lua script against its version at an earlier git revision: Redis's own µs per call.

    .venv/bin/python -m bench.ab_script [--script reserve] [--rev a5c71bc] [--rounds 6] [--calls 20000]
        [--skus 1] [--limit 0]

For a change on a hot path that only touches a script. Both versions (the old one spliced with the
includes of its own revision) are loaded into one redis-server; rounds alternate A and B, each on a
fresh SKU: `calls` one-unit reserves by distinct users through the core, first while stock lasts
(holds: answers 0) and then against the sold-out SKU (answers sold_out), the two shapes of the
hot-SKU scenario; with `--skus N` the reserves go round-robin over N SKUs (N >= calls / 16: every
hold stays a light one, the one-hold-per-SKU shape), with `--limit L` under a per-user limit. Per
phase, INFO commandstats gives the EVALSHA microseconds spent inside Redis; the result is the new
version's µs per call divided by the old one's, per round and as the median.
Counters are checked after every phase (held == successes, avail + held == stock).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import redis

from bench.solo import delete_prefix
from inventory import Inventory, Settings
from inventory.errors import SoldOut
from inventory.scripts import _INCLUDE, load_sources

RESULTS = Path(__file__).parent / "results"


def _old_source(name: str, rev: str) -> tuple[str, str]:
    """The script `name` as it was at `rev`, its includes taken from the same revision, and its key
    layout (the file name's stem, e.g. 'reserve-4+4n+m+1')."""
    files = subprocess.run(["git", "ls-tree", "--name-only", rev, "lua/"], check=True, capture_output=True,
                           text=True).stdout.split()
    path = next(f for f in files if f.split("/")[-1].split("-", 1)[0] == name)

    def show(p: str) -> str:
        return subprocess.run(["git", "show", f"{rev}:{p}"], check=True, capture_output=True, text=True).stdout
    return _INCLUDE.sub(lambda m: show(f"lua/includes/{m.group(1)}.lua"), show(path)), Path(path).stem


def _keys_for(layout: str, keys: list[Any], args: list[Any]) -> list[Any]:
    """The current reserve call's KEYS in an older reserve layout: before the hold buckets
    ('reserve-4+4n+m+1') a line had no hold bucket (each line's 4th of 5 keys)."""
    if layout != "reserve-4+4n+m+1":
        return keys
    m = int(args[5])
    n = (len(args) - 8 - 2 * m) // 2
    lines = keys[4:4 + 5 * n]
    return keys[:4] + [k for i, k in enumerate(lines) if i % 5 != 3] + keys[4 + 5 * n:]


def _evalsha_usec(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def _phase(inv: Inventory, skus: list[str], calls: int, stock: int) -> dict[str, float]:
    """`calls` reserves of one unit by distinct users, round-robin over `skus` (`stock` units in all);
    Redis µs per call, and the answers."""
    before = _evalsha_usec(inv.redis)
    held = refused = 0
    for n in range(calls):
        try:
            inv.reservations.reserve(f"u{n}-{time.monotonic_ns()}", {skus[n % len(skus)]: 1}, ttl_seconds=3600)
            held += 1
        except SoldOut:
            refused += 1
    after = _evalsha_usec(inv.redis)
    levels = [inv.catalog.get(sku).stock for sku in skus]
    assert sum(lv.available + lv.held for lv in levels) == stock and not any(lv.sold for lv in levels), levels
    assert (held, refused) in ((calls, 0), (0, calls)), (held, refused)  # all holds, then all sold out
    return {"calls": after[0] - before[0], "us_per_call": (after[1] - before[1]) / max(after[0] - before[0], 1),
            "held": held, "sold_out": refused}


def alternate(rounds: int, first: str, second: str,
              measure: Callable[[int, str], Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each round measures both variants, in alternating order, so warm-up and drift favour neither."""
    for r in range(rounds):
        yield r, {label: measure(r, label) for label in ((first, second) if r % 2 == 0 else (second, first))}


def run(script: str, rev: str, rounds: int, calls: int, redis_url: str, skus: int = 1,
        limit: int = 0) -> dict[str, Any]:
    settings = Settings(redis_url=redis_url, key_prefix=f"abscript{int(time.time())}")
    old, layout = _old_source(script, rev)
    variants = {"old": old, "new": load_sources()[script].source}
    out: dict[str, Any] = {"script": script, "old_rev": rev, "calls": calls, "skus": skus, "limit": limit,
                           "rounds": []}
    inv = Inventory.from_settings(settings)
    evalsha = inv.ctx.scripts._evalsha

    old_sha = inv.redis.script_load(old)  # loaded up front: a NOSCRIPT fallback would send the new layout

    def old_evalsha(sha: str, numkeys: int, *rest: Any) -> Any:
        if sha != old_sha:
            return evalsha(sha, numkeys, *rest)
        keys = _keys_for(layout, list(rest[:numkeys]), list(rest[numkeys:]))
        return evalsha(sha, len(keys), *keys, *rest[numkeys:])

    def measure(r: int, label: str) -> dict[str, Any]:
        inv.ctx.scripts._scripts[script] = inv.redis.register_script(variants[label])
        inv.ctx.scripts._evalsha = old_evalsha if label == "old" and script == "reserve" else evalsha
        names = [f"AB{r}{label}-{j}" for j in range(skus)]
        for sku in names:
            inv.catalog.configure(sku, name=sku, price=100, currency="USD", per_user_limit=limit)
            inv.catalog.adjust_stock(sku, set_total=calls // skus, reason="seed")
        stock = calls // skus * skus
        return {"holds": _phase(inv, names, stock, stock), "sold_out": _phase(inv, names, stock, stock)}

    try:
        for r, row in alternate(rounds, "old", "new", measure):
            row["ratio_holds"] = row["new"]["holds"]["us_per_call"] / row["old"]["holds"]["us_per_call"]
            row["ratio_sold_out"] = row["new"]["sold_out"]["us_per_call"] / row["old"]["sold_out"]["us_per_call"]
            out["rounds"].append(row)
            print(f"round {r}: new/old µs per call, holds {row['ratio_holds']:.3f}, "
                  f"sold out {row['ratio_sold_out']:.3f}", flush=True)
    finally:
        delete_prefix(inv.redis, settings.key_prefix)
    out["median_ratio_holds"] = statistics.median(r["ratio_holds"] for r in out["rounds"])
    out["median_ratio_sold_out"] = statistics.median(r["ratio_sold_out"] for r in out["rounds"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--script", default="reserve")
    parser.add_argument("--rev", required=True, help="the git revision of the old version")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--skus", type=int, default=1, help="SKUs the reserves go round-robin over")
    parser.add_argument("--limit", type=int, default=0, help="per-user limit of every SKU (0: none)")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    result = run(args.script, args.rev, args.rounds, args.calls, args.redis_url, args.skus, args.limit)
    name = f"ab_script_{args.script}{'_' + args.label if args.label else ''}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"median new/old: holds {result['median_ratio_holds']:.3f}, sold out "
          f"{result['median_ratio_sold_out']:.3f} -> bench/results/{name}")


if __name__ == "__main__":
    main()
