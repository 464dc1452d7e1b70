"""Client CPU per reserve through the core with and without the lost-script-cache check installed.

    .venv/bin/python -m bench.script_call_cost [--rounds 8] [--calls 5000]

`Scripts.call` runs EVALSHA itself and, only on NOSCRIPT, the check `on_cache_lost` (the API's and
workers' default, RECOVERY_ON_SCRIPT_LOSS): "checked". Before the check existed every call went through
redis-py's `Script` object: "plain". Rounds alternate the two on fresh SKUs of one redis-server; each times `calls` one-unit reserves (holds) with
`time.process_time`, so other tenants' load moves the figures less than wall time would. The result is
the checked variant's CPU per call divided by the unchecked one's, per round and as the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench.ab_script import alternate
from bench.solo import delete_prefix
from inventory import Inventory, Settings

RESULTS = Path(__file__).parent / "results"


def _round(inv: Inventory, sku: str, calls: int) -> float:
    """CPU µs per reserve of one unit by distinct users."""
    inv.catalog.configure(sku, name=sku, price=100, currency="USD", per_user_limit=0)
    inv.catalog.adjust_stock(sku, set_total=calls, reason="seed")
    started = time.process_time()
    for n in range(calls):
        inv.reservations.reserve(f"u{n}", {sku: 1}, ttl_seconds=3600)
    spent = time.process_time() - started
    level = inv.catalog.get(sku).stock
    assert (level.held, level.available) == (calls, 0), level
    return spent / calls * 1e6


def run(rounds: int, calls: int, redis_url: str) -> dict[str, Any]:
    settings = Settings(redis_url=redis_url, key_prefix=f"scriptcall{int(time.time())}")
    inv = Inventory.from_settings(settings)
    scripts = inv.ctx.scripts
    direct = scripts.call

    def through_script_object(name: str, keys: Any, args: Any, client: Any = None) -> Any:
        return scripts._scripts[name](keys=keys, args=args, client=client)  # the path before the check

    def measure(r: int, label: str) -> float:
        scripts.call = direct if label == "checked" else through_script_object  # type: ignore[method-assign]
        scripts.on_cache_lost = (lambda: None) if label == "checked" else None
        return _round(inv, f"SC{r}{label}", calls)

    out: dict[str, Any] = {"calls": calls, "rounds": []}
    try:
        for r, row in alternate(rounds, "plain", "checked", measure):
            row["ratio"] = row["checked"] / row["plain"]
            out["rounds"].append(row)
            print(f"round {r}: checked {row['checked']:.1f} µs, plain {row['plain']:.1f} µs, "
                  f"ratio {row['ratio']:.3f}", flush=True)
    finally:
        scripts.call = direct  # type: ignore[method-assign]
        delete_prefix(inv.redis, settings.key_prefix)
    out["median_ratio"] = statistics.median(r["ratio"] for r in out["rounds"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    result = run(args.rounds, args.calls, args.redis_url)
    (RESULTS / "script_call_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"median checked / plain CPU per reserve: {result['median_ratio']:.3f} "
          f"-> bench/results/script_call_cost.json")


if __name__ == "__main__":
    main()
