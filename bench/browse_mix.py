"""Scenario 3, browse + buy mix: 90% product reads, 10% single-unit reservations, Zipf popularity.

flashstock and, as the same-run reference, the bare ceiling (bench/ceiling/browse.py: one HGETALL per
read, flashstock's reserve Lua per reservation) each serve the same deterministic request plan at
every --connections count, on a freshly seeded catalogue each time. Stock is the same for every SKU,
so the head of the Zipf curve sells out while the long tail keeps selling: both the 201 and the
sold-out path are measured, and undersell can be checked per SKU.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import signal
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import redis

from bench.browse_logic import (
    RESERVE,
    TYPES,
    SkuState,
    aggregate,
    check_skus,
    expected_attempts,
    failures,
    latency_summary,
    request_plan,
    sku_name,
    split_plan,
    zipf_cdf,
)
from bench.cpu import CpuWindow
from bench.generators import _running, _wait_rusage
from bench.procs import free_port, wait_for_port
from bench.services import create_bench_db, drop_bench_db
from bench.suite import Context
from bench.targets import (
    BENCH_API_KEY,
    FS_KEY_PREFIX,
    Env,
    Target,
    ceiling_target,
    flashstock_target,
    gunicorn_argv,
    wipe_bench_prefix,
)

NAME = "browse_mix"
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HOLD_TTL_S = 120  # flashstock's default hold TTL and the ceiling's HOLD_TTL_MS
MAX_RUN_S = HOLD_TTL_S - 20  # holds must outlive a run, or expiries would fake oversell/undersell
WRK_THREADS = 2


@dataclass(frozen=True)
class MixConfig:
    """Catalogue, stock and load of one run."""

    skus: int
    stock: int  # units of every SKU
    requests: int  # per target and connection count
    warmup: int  # reads (no reservations) before a target's first run
    reserve_share: float = 0.10
    zipf_s: float = 1.1
    seed: int = 6


# Full: 10,000 reservation attempts per run; with 20 units each, SKUs down to rank ~50 expect more
# attempts than stock (the head sells out) while ~45% of attempts go to the tail and succeed.
FULL = MixConfig(skus=10_000, stock=20, requests=100_000, warmup=2_000)
SMOKE = MixConfig(skus=1_000, stock=3, requests=3_000, warmup=200)


def mix_ceiling_target() -> Target:
    """The ceiling with the product-read route, on the flashstock target's keys."""

    def command(env: Env, port: int) -> list[str]:
        spec = (f"bench.ceiling.browse:create_app(redis_port={env.redis_port}, key_prefix={FS_KEY_PREFIX!r}, "
                f"client={env.redis_client!r}, max_connections={env.redis_pool})")
        return gunicorn_argv(env, port, spec)

    return replace(ceiling_target(), command=command)


def _inventory(r: redis.Redis) -> object:
    from inventory import Inventory
    from inventory.config import Settings

    return Inventory(r, Settings(key_prefix=FS_KEY_PREFIX))


def seed_catalog(redis_port: int, cfg: MixConfig) -> None:
    """Wipe the bench prefix, then create the SKUs with their stock through the core's importer."""
    from inventory.catalog_file import CatalogRow
    from inventory.importer import apply_plan, plan_import

    with redis.Redis(host="127.0.0.1", port=redis_port) as r:
        wipe_bench_prefix(r)
        inv = _inventory(r)
        rows = [CatalogRow(line=i + 1, sku=sku_name(i), name=f"bench {sku_name(i)}", price=1000, stock=cfg.stock)
                for i in range(cfg.skus)]
        result = apply_plan(inv, plan_import(inv, rows), reason="bench")  # type: ignore[arg-type]
    if result.failed or result.created != cfg.skus:
        raise RuntimeError(f"seeding failed: created {result.created}, failed {result.failed[:3]}")


def read_stock(redis_port: int) -> dict[str, SkuState]:
    """Every SKU's counters after a run, via the core's catalogue listing."""
    out: dict[str, SkuState] = {}
    with redis.Redis(host="127.0.0.1", port=redis_port) as r:
        catalog = _inventory(r).catalog  # type: ignore[attr-defined]
        after = ""
        while True:
            page = catalog.list(after=after, limit=1000)
            for p in page:
                s = p.stock
                out[p.sku] = SkuState(s.total, s.available, s.held, s.sold)
            if len(page) < 1000:
                return out
            after = page[-1].sku


def drive(ctx: Context, port: int, plan: list[tuple[str, int]], connections: int, max_s: float, tag: str) -> dict:
    """Run wrk with bench/wrk/mix.lua over the plan; return its raw JSON plus the generator's CPU."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not installed (apt-get install -y wrk)")
    threads = min(WRK_THREADS, connections)
    prefix = ctx.tmp / f"{tag}.plan"
    for tid, part in enumerate(split_plan(plan, threads)):
        Path(f"{prefix}.{tid}").write_text("".join(f"{op} {sku_name(rank)}\n" for op, rank in part))
    out = ctx.tmp / f"{tag}.json"
    for stale in out.parent.glob(out.name + ".done.*"):
        stale.unlink()
    argv = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{int(max_s)}s", "--timeout", "10s",
            "-s", str(BENCH / "wrk" / "mix.lua"), f"http://127.0.0.1:{port}", "--",
            str(prefix), str(math.ceil(len(plan) / threads)), tag, str(out), BENCH_API_KEY]
    proc = ctx.procs.start(f"wrk-{tag}", argv)
    while _running(proc.pid) and len(list(out.parent.glob(out.name + ".done.*"))) < threads:
        time.sleep(0.05)
    if _running(proc.pid):
        proc.send_signal(signal.SIGINT)  # every quota met: make wrk report now, not at -d
    rc, cpu = _wait_rusage(ctx.procs, proc, 60)
    if rc != 0:
        raise RuntimeError(f"wrk exited {rc}; see {ctx.procs.log_dir}/wrk-{tag}.log")
    raw = json.loads(out.read_text())
    lines: list[str] = []
    for tid in range(threads):
        lines += Path(f"{out}.{tid}").read_text().splitlines()
    raw.update(aggregate(lines), generator_cpu_s=round(cpu, 3))
    return raw


def summarize(target: str, connections: int, planned: int, raw: dict, stock: dict[str, SkuState],
              cpu: dict) -> dict:
    """One run's figures from wrk's raw JSON and the SKUs' final counters."""
    elapsed = raw["active_s"]
    errs = raw["errors"]
    types = {}
    for name in TYPES.values():
        t = raw["types"][name]
        n = sum(t["status"].values())
        types[name] = {
            "answered": n,
            "rps": round(n / elapsed, 1) if elapsed else 0.0,
            "status": dict(sorted(t["status"].items())),
            "5xx": sum(v for k, v in t["status"].items() if k.startswith("5")),
            "error_codes": dict(t["error_codes"]),
            "latency_ms": latency_summary(us / 1000 for us in t["latency_us"]),
        }
    answered = raw["answered"]
    return {
        "target": target,
        "connections": connections,
        "planned": planned,
        "answered": answered,
        "elapsed_s": round(elapsed, 3),
        "rps": round(answered / elapsed, 1) if elapsed else 0.0,
        "types": types,
        "latency_ms": latency_summary(us / 1000 for t in TYPES.values() for us in raw["types"][t]["latency_us"]),
        # wrk's own histogram, after its coordinated-omission correction (stats_correct adds synthetic
        # samples below every long latency), so it reads higher than the measured latencies above
        "latency_ms_wrk_corrected": {k: round(v / 1000, 3) for k, v in raw["latency_us"].items()},
        "unattributed": sum(raw["unattributed"].values()),
        "unattributed_status": raw["unattributed"],
        "transport_errors": errs["connect"] + errs["read"] + errs["write"] + errs["timeout"],
        "truncated": answered < planned,
        "generator_cpu_s": raw["generator_cpu_s"],
        "cpu": cpu,
        "skus": check_skus(stock, raw["sku_201"], raw["sku_sold_out"]),
    }


def _line(run: dict) -> str:
    """One console line per run."""
    rd, rs, sk = run["types"]["read"], run["types"]["reserve"], run["skus"]
    return (
        f"{NAME} {run['target']:10s} c={run['connections']:<4d} req={run['answered']:<7d} rps={run['rps']:<7.0f} "
        f"read p50/p99={rd['latency_ms']['p50']}/{rd['latency_ms']['p99']}ms "
        f"reserve p50/p99={rs['latency_ms']['p50']}/{rs['latency_ms']['p99']}ms "
        f"201={rs['status'].get('201', 0)} 409={rs['status'].get('409', 0)} 5xx={rd['5xx'] + rs['5xx']} "
        f"sold_out_skus={sk['skus_sold_out']} over={sk['oversell']} under={sk['undersell']} "
        f"gen_cpu={run['cpu']['generator_share_of_capacity']:.0%} "
        f"other_tenants_cpu={run['cpu']['other_share_of_capacity']:.0%}"
        + (" TRUNCATED" if run["truncated"] else "")
        + (f" FAIL: {'; '.join(run['failures'])}" if run["failures"] else "")
    )


def run_target(ctx: Context, target: Target, env: Env, cfg: MixConfig, plan: list[tuple[str, int]],
               connections: list[int]) -> list[dict]:
    """Start one target, run the mix at each connection count on a fresh catalogue, stop it."""
    port = free_port()
    server = ctx.procs.start(f"{NAME}-{target.name}", target.command(env, port), cwd=REPO,
                             env=target.env_vars(env) if target.env_vars else None)
    max_s = min(ctx.args.max_seconds, MAX_RUN_S)
    runs = []
    try:
        wait_for_port(port, 30, server)
        seed_catalog(env.redis_port, cfg)
        if cfg.warmup:
            warm = request_plan(cfg.warmup, cfg.skus, cfg.zipf_s, 0.0, cfg.seed + 1)
            drive(ctx, port, warm, min(32, max(connections)), 30.0, f"{NAME}-{target.name}-warm")
        for conns in connections:
            seed_catalog(env.redis_port, cfg)
            window = CpuWindow({"server": server.pid, "redis": ctx.redis_pid}, include_postgres=False)
            window.start()
            t0 = time.monotonic()
            raw = drive(ctx, port, plan, conns, max_s, f"{NAME}-{target.name}-c{conns}")
            cpu = window.stop(time.monotonic() - t0, raw["generator_cpu_s"])
            run = summarize(target.name, conns, len(plan), raw, read_stock(env.redis_port), cpu)
            run["failures"] = failures(run)
            runs.append(run)
            print(_line(run), flush=True)
    finally:
        ctx.procs.stop(server)
    return runs


def ratios(runs: list[dict], subject: str = "flashstock", ref: str = "ceiling") -> dict:
    """subject ÷ ref per connection count: total rps and per-type p99."""
    by = {(r["target"], r["connections"]): r for r in runs}
    out = {}
    for (name, conns), a in by.items():
        b = by.get((ref, conns))
        if name != subject or b is None or not b["rps"]:
            continue
        row = {"rps": round(a["rps"] / b["rps"], 3)}
        for t in TYPES.values():
            pa, pb = a["types"][t]["latency_ms"]["p99"], b["types"][t]["latency_ms"]["p99"]
            row[f"{t}_p99"] = round(pa / pb, 3) if pa and pb else None
        out[str(conns)] = row
    return out


def write_results(out_dir: Path, doc: dict) -> list[Path]:
    """browse_mix.json (everything) and browse_mix_summary.csv (one row per run and request type)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{NAME}.json", out_dir / f"{NAME}_summary.csv"]
    paths[0].write_text(json.dumps(doc, indent=1))
    with paths[1].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["target", "connections", "type", "answered", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms",
                    "status", "s5xx", "oversell", "undersell", "skus_sold_out", "generator_cpu_share",
                    "other_cpu_share", "truncated"])
        for r in doc["runs"]:
            for name, t in r["types"].items():
                lat = t["latency_ms"]
                w.writerow([r["target"], r["connections"], name, t["answered"], t["rps"], lat["p50"], lat["p95"],
                            lat["p99"], lat["max"], json.dumps(t["status"]), t["5xx"], r["skus"]["oversell"],
                            r["skus"]["undersell"], r["skus"]["skus_sold_out"],
                            r["cpu"]["generator_share_of_capacity"], r["cpu"]["other_share_of_capacity"],
                            r["truncated"]])
    return paths


def run(ctx: Context) -> dict:
    """The scenario: both targets, every connection count; fails on oversell, undersell, 5xx, odd answers."""
    a = ctx.args
    cfg = SMOKE if ctx.smoke else FULL
    if getattr(a, "mix_requests", None):
        cfg = replace(cfg, requests=a.mix_requests)
    connections = [int(c) for c in a.connections.split(",")]
    plan = request_plan(cfg.requests, cfg.skus, cfg.zipf_s, cfg.reserve_share, cfg.seed)
    reserves = sum(1 for op, _ in plan if op == RESERVE)
    cdf = zipf_cdf(cfg.skus, cfg.zipf_s)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    runs: list[dict] = []
    errors: list[str] = []
    dsn = create_bench_db(ctx.pg_base_dsn, ctx.pg_admin_db)  # flashstock runs its migrations at start
    try:
        env = Env(redis_port=ctx.redis_port, pg_dsn=dsn, workers=a.workers, worker_connections=a.worker_connections,
                  redis_client=a.redis_client, redis_pool=a.redis_pool, pg_pool=a.pg_pool)
        for target in (flashstock_target(), mix_ceiling_target()):
            try:
                runs += run_target(ctx, target, env, cfg, plan, connections)
            except Exception as exc:  # noqa: BLE001 - one broken target must not hide the other
                errors.append(f"{target.name}: {exc!r}")
                print(f"{NAME} {target.name}: FAILED {exc!r} (logs in {ctx.tmp})", flush=True)
    finally:
        if not a.keep_db:
            drop_bench_db(ctx.pg_base_dsn, ctx.pg_admin_db)
    doc = {
        "scenario": NAME,
        "started": started,
        "config": asdict(cfg),
        "plan": {
            "requests": len(plan),
            "reads": len(plan) - reserves,
            "reserves": reserves,
            "reserve_share_of_rank0": round(cdf[0], 4),
            "skus_expected_to_sell_out": sum(
                1 for k in range(cfg.skus) if expected_attempts(k, reserves, cdf) >= cfg.stock),
        },
        "max_seconds_per_run": min(a.max_seconds, MAX_RUN_S),
        "runs": runs,
        "ratios": {"flashstock_vs_ceiling": ratios(runs)},
        "errors": errors,
        "failures": errors + [f"{r['target']}@{r['connections']}: {f}" for r in runs for f in r["failures"]],
        "summary": [_line(r) for r in runs],
    }
    doc["summary"] += [f"{NAME} flashstock/ceiling @{c}: {v}"
                       for c, v in doc["ratios"]["flashstock_vs_ceiling"].items()]
    for p in write_results(ctx.out_dir, doc):
        print(f"wrote {p.relative_to(REPO) if p.is_relative_to(REPO) else p}")
    return doc
