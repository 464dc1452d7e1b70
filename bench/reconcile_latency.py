"""Reconcile vs everyone else: another client's PING latency idle and during repeated reconcile runs.

    .venv/bin/python -m bench.reconcile_latency [--smoke] [--seconds 15]

Target (issue 10): during a reconcile of 20,000 open holds and 40,000 outbox entries, another
client's PING p99 stays within 5 ms of its idle p99.

Seed (private redis-server, prefix fsreclat, its own migrated database), all through the core: one
hot SKU with 10,000 open holds and 100 SKUs with 100 each (20,000 holds, 1 h TTL); 50 checkouts per
small SKU and restocks (+1) up to 40,000 outbox entries, none persisted (no drain runs, so the whole
backlog is read by every run). Phases of --seconds each, in one run, while a separate process sends
a PING every millisecond on its own connection and records each latency from the moment the PING
was due (so a stall counts for every PING that had to wait for it):

  idle  nothing else runs;
  old   the pre-change reconcile's Redis reads, repeated: per 200-SKU chunk one MULTI returning every
        stock hash, every holds zset and the whole outbox, then per suspect SKU (twice: report pass
        and repair pass) its hash, whole holds and whole outbox under WATCH. Redis reads and parsing
        only (no PostgreSQL), so its duration is a lower bound of the old run's;
  new   run_reconciliation(repair=True) as beat calls it: every SKU marked dirty, 5 of them (the hot
        one included) given +1 available before each run; each run must check 101 SKUs and repair
        exactly those 5;
  idle  again (the idle figure pools both idle phases).

SLOWLOG (commands over 1 ms) is recorded per phase; commands inside a MULTI are logged one by one,
so it understates what a MULTI blocks. The PING figures are the measure.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import redis

from bench.cpu import CpuWindow
from bench.goals import at_most, verdict
from bench.reconcile_scale import create_db, drop_db, sqlalchemy_url
from bench.solo import delete_prefix, main, parser, write_json
from bench.suite import Context
from inventory import Inventory, Settings
from inventory.db import make_engine, make_session_factory
from inventory.holds import read_open_holds
from inventory.migrations import upgrade
from inventory.outbox import parse_entries
from inventory.reconcile import run_reconciliation

NAME = "reconcile_latency"
SLACK_MS = 5.0
PING_INTERVAL_S = 0.001
SLOW_US = 1000
DRIFTED = 5
_DB = "flashstock_bench_reclat"


@dataclass(frozen=True)
class Sizes:
    """What is seeded and how long each phase lasts."""

    hot_holds: int
    small_skus: int
    small_holds: int
    checkouts_per_small: int
    outbox: int
    seconds: float

    @property
    def holds(self) -> int:
        return self.hot_holds + self.small_skus * self.small_holds


def sizes(smoke: bool, seconds: float | None = None) -> Sizes:
    """Full: 20,000 holds and 40,000 outbox entries, 15 s phases; smoke: a twentieth, 2 s phases."""
    if smoke:
        return Sizes(500, 10, 50, 5, 2_000, seconds or 2.0)
    return Sizes(10_000, 100, 100, 50, 40_000, seconds or 15.0)


# -- pure logic (tested in tests/bench) -------------------------------------------------------------


def percentiles(samples: list[float]) -> dict:
    """n, p50, p99, p99.9 and max of samples (nearest rank), rounded to 3 places."""
    if not samples:
        return {"n": 0, "p50": None, "p99": None, "p999": None, "max": None}
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))], 3)

    return {"n": len(ordered), "p50": rank(0.50), "p99": rank(0.99), "p999": rank(0.999),
            "max": round(ordered[-1], 3)}


def goal(idle_p99_ms: float | None, during_p99_ms: float | None, slack_ms: float = SLACK_MS) -> dict:
    """During-reconcile PING p99 against idle p99 + slack."""
    if idle_p99_ms is None:
        return at_most(None, slack_ms, "ms")
    return at_most(during_p99_ms, round(idle_p99_ms + slack_ms, 3), "ms")


def sku_names(size: Sizes) -> list[str]:
    """The hot SKU first, then the small ones."""
    return ["HOT"] + [f"S{i:03d}" for i in range(size.small_skus)]


# -- the pinger (its own process: never waits for this one's GIL) -----------------------------------


def ping_loop(port: int, seconds: float, out: str, ready: object) -> None:
    """PING on a fixed schedule (every PING_INTERVAL_S) for seconds; write each latency (ms) to out as JSON.

    Latency counts from when the PING was due, not when it was sent: a client that wanted to PING
    during a 50 ms stall waits for all of it, so every ping due in the stall counts (no coordinated
    omission, as wrk2 and HdrHistogram correct it).
    """
    client = redis.Redis(host="127.0.0.1", port=port)
    client.ping()
    ready.set()  # type: ignore[attr-defined]
    samples: list[float] = []
    start = time.perf_counter()
    due = start
    while due - start < seconds:
        time.sleep(max(0.0, due - time.perf_counter()))
        client.ping()
        samples.append((time.perf_counter() - due) * 1000)
        due += PING_INTERVAL_S
    Path(out).write_text(json.dumps(samples))


# -- seeding and the two read patterns -------------------------------------------------------------


def seed(inv: Inventory, size: Sizes) -> dict:
    """Holds, checkouts and restocks through the core; returns counts as Redis sees them."""
    skus = sku_names(size)
    for sku in skus:
        inv.catalog.configure(sku, name=f"Product {sku}", price=1000, currency="USD", per_user_limit=0)
        inv.catalog.adjust_stock(sku, set_total=size.hot_holds * 2 if sku == "HOT" else 1000, reason="seed")
    for i in range(size.hot_holds):
        inv.reservations.reserve(f"hot-{i}", {"HOT": 1}, ttl_seconds=3600)
    for sku in skus[1:]:
        for i in range(size.small_holds):
            inv.reservations.reserve(f"{sku}-h{i}", {sku: 1}, ttl_seconds=3600)
        for i in range(size.checkouts_per_small):
            inv.reservations.checkout(inv.reservations.reserve(f"{sku}-b{i}", {sku: 1}, ttl_seconds=3600).id)
    i = 0
    while inv.redis.xlen(inv.keys.parts[0].outbox) < size.outbox:
        inv.catalog.adjust_stock(skus[i % len(skus)], add=1, reason="restock")
        i += 1
    holds = sum(len(read_open_holds(inv.redis, inv.keys.sku(s))) for s in skus)
    return {"skus": len(skus), "holds": holds, "outbox": int(inv.redis.xlen(inv.keys.parts[0].outbox))}


def drift(inv: Inventory, skus: list[str]) -> list[str]:
    """Mark every SKU dirty and give DRIFTED of them (the hot one first) one unit too many available."""
    drifted = skus[:1] + skus[1::max(1, len(skus) // (DRIFTED - 1))][:DRIFTED - 1]
    for sku in drifted:
        inv.redis.hincrby(inv.keys.sku(sku).stock, "avail", 1)
    inv.redis.sadd(inv.keys.parts[0].dirty, *skus)
    return drifted


def old_reads(inv: Inventory, skus: list[str], suspects: list[str], chunk: int = 200) -> None:
    """The pre-change run_reconciliation's Redis reads (whole holds and whole outbox per call)."""
    for start in range(0, len(skus), chunk):
        pipe = inv.redis.pipeline(transaction=True)
        for sku in skus[start:start + chunk]:
            keys = inv.keys.sku(sku)
            pipe.hgetall(keys.stock)
            pipe.zrange(keys.holds, 0, -1)
        pipe.xrange(inv.keys.parts[0].outbox)
        parse_entries(pipe.execute()[-1])
    for sku in suspects * 2:  # the report pass, then the repair pass
        keys = inv.keys.sku(sku)
        with inv.redis.pipeline(transaction=True) as pipe:
            pipe.watch(keys.stock)
            pipe.hgetall(keys.stock)
            pipe.zrange(keys.holds, 0, -1)
            parse_entries(pipe.xrange(inv.keys.parts[0].outbox))
            pipe.unwatch()


# -- phases -----------------------------------------------------------------------------------------


def phase(ctx: Context, name: str, seconds: float, work: Callable[[], float] | None) -> dict:
    """Run work() back to back (or nothing) while the pinger process samples; PING and work figures."""
    admin = redis.Redis(host="127.0.0.1", port=ctx.redis_port)
    out = ctx.tmp / f"{NAME}-{name}-{time.monotonic_ns()}.json"
    mp = multiprocessing.get_context("spawn")
    ready = mp.Event()
    pinger = mp.Process(target=ping_loop, args=(ctx.redis_port, seconds, str(out), ready))
    pinger.start()
    ready.wait(30)
    admin.slowlog_reset()
    window = CpuWindow({"redis": ctx.redis_pid}, include_postgres=True)
    window.start()
    t0, cpu0 = time.monotonic(), time.process_time()
    durations: list[float] = []
    while pinger.is_alive():
        if work is None:
            time.sleep(0.05)
        else:
            durations.append(work())
    pinger.join()
    cpu = window.stop(time.monotonic() - t0, time.process_time() - cpu0)
    slow = admin.slowlog_get(100_000)
    samples = json.loads(out.read_text())
    return {
        "phase": name, "ping_ms": percentiles(samples), "samples": samples,
        "runs": len(durations), "run_ms": percentiles([d * 1000 for d in durations]),
        "slowlog": {"over_ms": SLOW_US / 1000, "count": len(slow),
                    "max_ms": round(max((e["duration"] for e in slow), default=0) / 1000, 3),
                    "top": sorted(({"ms": round(e["duration"] / 1000, 3),
                                    "command": _command(e["command"])} for e in slow),
                                  key=lambda e: -e["ms"])[:5]},
        "cpu": cpu,
    }


def _command(raw: object) -> str:
    words = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).split()
    return " ".join(w if len(w) < 40 else w[:37] + "..." for w in words[:4])


def run(ctx: Context) -> dict:
    """Scenario entry point (bench/suite.py contract)."""
    size = sizes(ctx.smoke, getattr(ctx.args, "seconds", None))
    logging.getLogger("inventory").setLevel(logging.ERROR)
    admin = redis.Redis(host="127.0.0.1", port=ctx.redis_port)
    saved = {k: admin.config_get(k)[k] for k in ("slowlog-log-slower-than", "slowlog-max-len")}
    admin.config_set("slowlog-log-slower-than", SLOW_US)
    admin.config_set("slowlog-max-len", 100_000)
    create_db(ctx, _DB)
    url = sqlalchemy_url(ctx.pg_base_dsn, _DB)
    upgrade(url)
    engine = make_engine(url, pool_size=2)
    sessions = make_session_factory(engine)
    inv = Inventory(redis.Redis(host="127.0.0.1", port=ctx.redis_port), Settings(key_prefix="fsreclat"))
    failures: list[str] = []
    phases: list[dict] = []
    try:
        t0 = time.perf_counter()
        seeded = seed(inv, size)
        seed_s = round(time.perf_counter() - t0, 1)
        skus = sku_names(size)
        suspects = drift(inv, skus)

        def old() -> float:
            start = time.perf_counter()
            old_reads(inv, skus, suspects)
            return time.perf_counter() - start

        def new() -> float:
            expected = set(drift(inv, skus))
            start = time.perf_counter()
            report = run_reconciliation(inv, sessions, repair=True)
            elapsed = time.perf_counter() - start
            repaired = {d.sku for d in report.drifts if d.repaired}
            if report.skus_checked != len(skus) or repaired != expected or report.skus_busy or report.skipped:
                failures.append(f"run checked {report.skus_checked}/{len(skus)}, repaired {sorted(repaired)} "
                                f"(expected {sorted(expected)}), busy {report.skus_busy}, skipped {report.skipped!r}")
            return elapsed

        for name, work in (("idle", None), ("old", old), ("new", new), ("idle2", None)):
            phases.append(phase(ctx, name, size.seconds, work))
            print(f"{name}: ping {phases[-1]['ping_ms']} runs {phases[-1]['runs']} {phases[-1]['run_ms']}",
                  flush=True)
        if inv.redis.xlen(inv.keys.parts[0].outbox) != seeded["outbox"]:
            failures.append("the outbox changed during the phases")
    finally:
        engine.dispose()
        delete_prefix(inv.redis, inv.settings.key_prefix)
        for key, value in saved.items():
            admin.config_set(key, value)
        if not getattr(ctx.args, "keep_db", False):
            drop_db(ctx, _DB)
    result = summarise(ctx, size, seeded, seed_s, phases, failures)
    write_json(ctx, NAME, result)
    return result


def summarise(ctx: Context, size: Sizes, seeded: dict, seed_s: float, phases: list[dict],
              failures: list[str]) -> dict:
    """The result document: per-phase figures, idle pooled, the target and old/new ratios."""
    by = {p["phase"]: p for p in phases}
    idle = percentiles(by["idle"]["samples"] + by["idle2"]["samples"])
    for p in phases:
        p.pop("samples")
    new, old = by["new"]["ping_ms"], by["old"]["ping_ms"]
    result = {
        "scenario": NAME, "smoke": ctx.smoke, "sizes": size.__dict__, "seeded": seeded, "seed_s": seed_s,
        "versions": {"python": platform.python_version(), "redis_py": redis.__version__},
        "ping_interval_ms": PING_INTERVAL_S * 1000, "idle_ping_ms": idle, "phases": phases,
        "target": goal(idle["p99"], new["p99"]),
        "old_target": goal(idle["p99"], old["p99"]),
        "old_over_new": {k: round(old[k] / new[k], 2) if new[k] else None for k in ("p50", "p99", "max")},
        "failures": failures,
    }
    result["summary"] = summary(result)
    return result


def summary(result: dict) -> list[str]:
    """Console lines."""
    by = {p["phase"]: p for p in result["phases"]}

    def ping(p: dict) -> str:
        return f"p50 {p['p50']} / p99 {p['p99']} / max {p['max']} ms (n={p['n']:,})"

    s = result["seeded"]
    return [
        f"seeded {s['holds']:,} open holds, {s['outbox']:,} outbox entries over {s['skus']} SKUs in {result['seed_s']} s",
        f"PING idle: {ping(result['idle_ping_ms'])}",
        (f"PING during old reads: {ping(by['old']['ping_ms'])}; {by['old']['runs']} runs, median "
         f"{by['old']['run_ms']['p50']} ms; slowlog >1 ms: {by['old']['slowlog']['count']}, max "
         f"{by['old']['slowlog']['max_ms']} ms"),
        (f"PING during new reconcile: {ping(by['new']['ping_ms'])}; {by['new']['runs']} runs, median "
         f"{by['new']['run_ms']['p50']} ms; slowlog >1 ms: {by['new']['slowlog']['count']}, max "
         f"{by['new']['slowlog']['max_ms']} ms"),
        f"target p99 <= idle + {SLACK_MS:g} ms: new {verdict(result['target'])}; old {verdict(result['old_target'])}",
        f"old/new PING: p99 {result['old_over_new']['p99']}x, max {result['old_over_new']['max']}x",
    ]


if __name__ == "__main__":
    p = parser("python -m bench.reconcile_latency", __doc__ or "")
    p.add_argument("--seconds", type=float, default=None, help="length of each phase (default 15; smoke 2)")
    p.add_argument("--keep-db", action="store_true", help=f"keep the {_DB} database")
    raise SystemExit(main(NAME, run, p.parse_args()))
