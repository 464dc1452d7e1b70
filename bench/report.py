"""Markdown tables from a hot-SKU result JSON (used to write BENCHMARKS.md).

    .venv/bin/python -m bench.report bench/results/hot_sku.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BASELINES = ("pg_for_update", "pg_conditional", "pg_optimistic")


def _fmt(x: float, nd: int = 0) -> str:
    return f"{x:,.{nd}f}"


def runs_table(doc: dict) -> str:
    head = ("| target | conns | answered | req/s | p50 ms | p95 ms | p99 ms | max ms | sold out after | 409 | 5xx "
            "| oversell | undersell | server CPU / req | wrk CPU share | other tenants |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in doc["runs"]:
        ld, st, lat, m, cpu = r["load"], r["load"]["status"], r["load"]["latency_ms"], r["sellout"], r["cpu"]
        answered = st["201"] + st["409"] + st["5xx"] + st["other"]
        server_us = cpu["component_cpu_s"].get("server", 0.0) / max(answered, 1) * 1e6
        rows.append(
            f"| {r['target']} | {r['connections']} | {_fmt(answered)}{'*' if ld.get('truncated') else ''} "
            f"| {_fmt(ld['rps'])} | {lat['p50']:.1f} | {lat['p95']:.1f} | {_fmt(lat['p99'], 1)} | {_fmt(lat['max'])} "
            f"| {m['sellout_s']:.1f} s | {_fmt(st['409'])} | {st['5xx']} | {m['oversell']} | {m['undersell']} "
            f"| {server_us:.0f} µs | {cpu['generator_share_of_capacity']:.1%} | {cpu['other_share_of_capacity']:.0%} |"
        )
    return "\n".join(rows)


def ratio_table(doc: dict, subject: str, refs: tuple[str, ...]) -> str:
    conns = sorted({r["connections"] for r in doc["runs"]})
    head = "| " + subject + " ÷ | " + " | ".join(f"{c} conns: req/s | {c}: p99" for c in conns) + " |"
    rows = [head, "|" + "---|" * (1 + 2 * len(conns))]
    rat = doc["ratios"].get(subject, {})
    for ref in refs:
        if ref not in rat:
            continue
        cells = []
        for c in conns:
            v = rat[ref].get(str(c))
            cells += [f"{v['rps']:.2f}×", f"{v['p99']:.2f}×"] if v else ["–", "–"]
        rows.append(f"| {ref} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    doc = json.loads(Path(argv[0] if argv else "bench/results/hot_sku.json").read_text())
    print(runs_table(doc))
    print()
    print(ratio_table(doc, "flashstock", ("ceiling",) + BASELINES))
    print()
    print(ratio_table(doc, "ceiling", BASELINES))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
