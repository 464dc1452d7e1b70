"""Browse + buy mix logic: Zipf popularity, request plans, latency summaries, per-SKU accounting."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from typing import Iterable, Mapping, Sequence

from bench.flow_check import SkuState  # one SKU's counters, shared with the full-flow checks

READ, RESERVE = "p", "r"  # op letters in the plan files bench/wrk/mix.lua reads
TYPES = {READ: "read", RESERVE: "reserve"}
EXPECTED_STATUS = {"read": {"200"}, "reserve": {"201", "409"}}  # anything else means a misconfigured run
EXPECTED_CODES = {"reserve": {"sold_out"}}  # error codes a healthy run may answer with
SAMPLE = 10  # SKUs listed per kind of failure


def sku_name(rank: int) -> str:
    """SKU of 0-based popularity rank (rank 0 is the most popular)."""
    return f"mix-{rank:05d}"


def zipf_cdf(n: int, s: float) -> list[float]:
    """Cumulative probabilities of ranks 1..n with weight k**-s; the last entry is exactly 1."""
    if n < 1 or s <= 0:
        raise ValueError("need n >= 1 and s > 0")
    weights = [k ** -s for k in range(1, n + 1)]
    total = math.fsum(weights)
    cdf = list(itertools.accumulate(w / total for w in weights))
    cdf[-1] = 1.0
    return cdf


def request_plan(count: int, n_skus: int, s: float, reserve_share: float, seed: int) -> list[tuple[str, int]]:
    """`count` (op, rank) pairs: exactly round(count * reserve_share) reserves at random positions,
    every SKU drawn by Zipf popularity. Deterministic for a seed, so every target gets the same plan."""
    rng = random.Random(seed)
    ranks = rng.choices(range(n_skus), cum_weights=zipf_cdf(n_skus, s), k=count)
    ops = [READ] * count
    for i in rng.sample(range(count), round(count * reserve_share)):
        ops[i] = RESERVE
    return list(zip(ops, ranks))


def split_plan(plan: Sequence[tuple[str, int]], threads: int) -> list[list[tuple[str, int]]]:
    """Round-robin the plan over wrk threads (thread t sends items t, t+threads, ...)."""
    return [list(plan[t::threads]) for t in range(threads)]


def expected_attempts(rank: int, reserves: int, cdf: Sequence[float]) -> float:
    """Reservation attempts the SKU of `rank` can expect out of `reserves`."""
    return reserves * (cdf[rank] - (cdf[rank - 1] if rank else 0.0))


def aggregate(lines: Iterable[str]) -> dict:
    """Fold bench/wrk/mix.lua's answer lines ("op status sku latency_us code") into per-type status
    counts, error codes and latencies, unmatched answers by status, and 201s / sold-out refusals per SKU."""
    types = {name: {"status": Counter(), "error_codes": Counter(), "latency_us": []} for name in TYPES.values()}
    unattributed: Counter = Counter()
    ok: Counter = Counter()
    sold_out: Counter = Counter()
    for line in lines:
        op, status, sku, latency_us, code = line.split()
        if op not in TYPES:
            unattributed[status] += 1
            continue
        t = types[TYPES[op]]
        t["status"][status] += 1
        t["latency_us"].append(int(latency_us))
        if code != "-":
            t["error_codes"][code] += 1
        if op == RESERVE and status == "201":
            ok[sku] += 1
        elif op == RESERVE and code == "sold_out":
            sold_out[sku] += 1
    return {"types": types, "unattributed": dict(unattributed), "sku_201": dict(ok), "sku_sold_out": dict(sold_out)}


def latency_summary(values_ms: Iterable[float]) -> dict:
    """Count, p50/p95/p99 (nearest rank) and max of latencies in ms."""
    v = sorted(values_ms)
    if not v:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}

    def pct(p: float) -> float:
        return round(v[max(0, math.ceil(p / 100 * len(v)) - 1)], 3)

    return {"n": len(v), "p50": pct(50), "p95": pct(95), "p99": pct(99), "max": round(v[-1], 3)}


def check_skus(stock: Mapping[str, SkuState], successes: Mapping[str, int], sold_out: Mapping[str, int]) -> dict:
    """Per-SKU oversell, undersell and consistency of one run.

    oversell: units handed out beyond a SKU's total, by the worse witness (client 201s or the server's
    held + sold), plus any negative availability. undersell: units still available on a SKU that
    refused someone as sold out (holds outlive the run, so availability never rose during it).
    unbacked: 201s the server holds no unit for. inconsistent: available + held + sold != total.
    """
    over: dict[str, int] = {}
    under: dict[str, int] = {}
    unbacked: dict[str, int] = {}
    inconsistent: list[str] = []
    for sku, st in stock.items():
        taken = st.held + st.sold
        ok = successes.get(sku, 0)
        units = max(0, max(ok, taken) - st.total) + max(0, -st.available)
        if units:
            over[sku] = units
        if sold_out.get(sku) and st.available > 0:
            under[sku] = st.available
        if ok > taken:
            unbacked[sku] = ok - taken
        if st.available + taken != st.total:
            inconsistent.append(sku)
    unknown = sorted((set(successes) | set(sold_out)) - set(stock))
    return {
        "skus": len(stock),
        "skus_sold_out": sum(1 for st in stock.values() if st.available <= 0),
        "skus_refused_sold_out": sum(1 for n in sold_out.values() if n),
        "client_successes": sum(successes.values()),
        "server_taken": sum(st.held + st.sold for st in stock.values()),
        "oversell": sum(over.values()),
        "oversell_skus": _top(over),
        "undersell": sum(under.values()),
        "undersell_skus": _top(under),
        "unbacked_successes": sum(unbacked.values()),
        "unbacked_skus": _top(unbacked),
        "inconsistent_skus": inconsistent[:SAMPLE],
        "inconsistent": len(inconsistent),
        "unknown_skus": unknown[:SAMPLE],
    }


def _top(by_sku: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(by_sku.items(), key=lambda kv: (-kv[1], kv[0]))[:SAMPLE])


def failures(run: dict) -> list[str]:
    """Reasons one target/connections run must fail the command (empty when it passed)."""
    out: list[str] = []
    check = run["skus"]
    for key in ("oversell", "undersell", "unbacked_successes", "inconsistent"):
        if check[key]:
            out.append(f"{key} {check[key]}")
    if check["unknown_skus"]:
        out.append(f"answers for SKUs not in the catalogue: {check['unknown_skus']}")
    for name, t in run["types"].items():
        if t["5xx"]:
            out.append(f"{t['5xx']} 5xx on {name}")
        odd = {k: v for k, v in t["status"].items() if k not in EXPECTED_STATUS[name]}
        if odd:
            out.append(f"unexpected {name} statuses {odd} (codes {t['error_codes']})")
        codes = {k: v for k, v in t["error_codes"].items() if k not in EXPECTED_CODES.get(name, set())}
        if codes and not odd:
            out.append(f"unexpected {name} error codes {codes}")
    if run["unattributed"]:
        out.append(f"responses without the echoed X-Request-ID: {run['unattributed']}")
    if run["transport_errors"]:
        out.append(f"{run['transport_errors']} transport errors")
    return out
