"""Markdown tables from a hot-SKU result JSON (used to write BENCHMARKS.md).

    .venv/bin/python -m bench.report bench/results/hot_sku.json
    .venv/bin/python -m bench.report bench/results/hot_sku_cluster.json   # + per-request cost and per-shard tables
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


def _answered(r: dict) -> int:
    st = r["load"]["status"]
    return st["201"] + st["409"] + st["5xx"] + st["other"]


def _usec_shares(shards: dict) -> dict[str, float]:
    """Each node's share of the script server time (computed, so older result files work too)."""
    total = sum(s["script_usec"] for s in shards.values())
    return {node: (s["script_usec"] / total if total else 0.0) for node, s in shards.items()}


def cost_table(doc: dict, base: str = "flashstock") -> str:
    """Per answer: server and Redis CPU, script calls and script µs, the busiest shard; each ÷ `base`
    at the same connection count (runs with per-shard counts only)."""
    runs = [r for r in doc["runs"] if "shards" in r]
    by = {(r["target"], r["connections"]): r for r in runs}

    def per(r: dict) -> dict[str, float]:
        n, cpu, sh = max(_answered(r), 1), r["cpu"]["component_cpu_s"], r["shards"]
        return {"server": cpu.get("server", 0.0) / n * 1e6, "redis": cpu.get("redis", 0.0) / n * 1e6,
                "scripts": sh["scripts_per_answer"], "usec": sh["script_usec_per_answer"]}

    head = ("| target | conns | req/s (÷ base) | p99 ms (÷ base) | server CPU / answer (÷ base) | Redis CPU / answer, all nodes "
            "(÷ base) | scripts / answer | script µs / answer (÷ base) | busiest shard's share of scripts |")
    rows = [head, "|" + "---|" * 9]
    for r in runs:
        b = by.get((base, r["connections"]))
        me, ref = per(r), per(b) if b else None

        def x(v: float, k: str, nd: int = 0) -> str:
            return f"{v:,.{nd}f}" + (f" ({v / ref[k]:.2f}×)" if ref and ref[k] and r is not b else "")

        rps, p99 = r["load"]["rps"], r["load"]["latency_ms"]["p99"]
        rr = f" ({rps / b['load']['rps']:.2f}×)" if b and r is not b else ""
        pr = f" ({p99 / b['load']['latency_ms']['p99']:.2f}×)" if b and r is not b else ""
        rows.append(f"| {r['target']} | {r['connections']} | {rps:,.0f}{rr} | {p99:,.1f}{pr} | {x(me['server'], 'server')} µs "
                    f"| {x(me['redis'], 'redis')} µs | {me['scripts']:.2f} | {x(me['usec'], 'usec', 1)} "
                    f"| {r['shards']['max_shard_share']:.0%} / {max(_usec_shares(r['shards']['shards']).values(), default=0):.0%} |")
    return "\n".join(rows)


def shard_table(doc: dict) -> str:
    """Script calls, their server µs and all commands (scripts' inner calls included) per node and load."""
    head = "| target | conns | node | scripts | share | µs / script | share of script µs | commands (incl. inside scripts) |"
    rows = [head, "|" + "---|" * 8]
    for r in doc["runs"]:
        shares = _usec_shares(r.get("shards", {}).get("shards", {}))
        for node, s in sorted(r.get("shards", {}).get("shards", {}).items(), key=lambda kv: -kv[1]["scripts"]):
            per = f"{s['usec_per_script']:.1f}" if s["usec_per_script"] is not None else "–"
            rows.append(f"| {r['target']} | {r['connections']} | {node} | {s['scripts']:,} | {s['script_share']:.0%} "
                        f"| {per} | {shares[node]:.0%} | {s['commands']:,} |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    doc = json.loads(Path(argv[0] if argv else "bench/results/hot_sku.json").read_text())
    print(runs_table(doc))
    print()
    print(ratio_table(doc, "flashstock", ("ceiling",) + BASELINES))
    print()
    print(ratio_table(doc, "ceiling", BASELINES))
    if any(r["target"] == "flashstock_cluster" for r in doc["runs"]):
        print()
        print(ratio_table(doc, "flashstock_cluster", ("flashstock", "ceiling")))
    if any("shards" in r for r in doc["runs"]):
        print()
        print(cost_table(doc))
        print()
        print(shard_table(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
