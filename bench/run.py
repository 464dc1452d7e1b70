"""One command: start services, run the scenarios, stop everything, write results.

    .venv/bin/python -m bench                                # every scenario, full size
    .venv/bin/python -m bench --smoke                        # every scenario, tiny numbers
    .venv/bin/python -m bench --scenarios hot_sku,browse_mix # a subset (comma list)

Each scenario is `run(ctx: Context) -> dict` (bench/suite.py), named in SCENARIOS and imported only
when it runs; a run writes out_dir/scenarios.json (each scenario's failures, summary and seconds) and
exits 1 if any scenario failed. The hot-SKU sell-out (`hot_sku`) lives in this module: --targets,
--units, --attempts, --warmup, --generator and --label are its knobs. --connections, --max-seconds and
the server settings also apply to the other HTTP scenarios.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from bench import plots
from bench.cluster import Backend, merge_redis_cpu, node_pids, shard_delta, start_cluster
from bench.cluster import snapshot as _snapshot
from bench.cpu import CpuWindow
from bench.generators import GENERATORS, Load
from bench.procs import ProcessGroup, free_port, install_signal_handlers, wait_for_port
from bench.scenarios import failures, ratios, sellout_metrics
from bench.services import create_bench_db, drop_bench_db, start_redis
from bench.suite import Context
from bench.targets import Env, Target, all_targets

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HOT_SKU = "hot-1"
WARM_SKU = "warm-1"
# Scenario name -> "module:function" taking a Context; modules are imported only when chosen.
SCENARIOS: dict[str, str] = {
    "hot_sku": "bench.run:hot_sku",
    "full_flow": "bench.full_flow:run",
    "browse_mix": "bench.browse_mix:run",
    "core_only": "bench.core_only:run",
    "memory": "bench.memory:run",
    "memory_layouts": "bench.memory_layouts:run",
    "record_packing": "bench.record_packing:run",
    "reconcile_scale": "bench.reconcile_scale:run",
    "reconcile_latency": "bench.reconcile_latency:run",
}
RUN_INDEX = "scenarios.json"  # per-scenario failures, summary and seconds of the last run in out_dir


def shard_snapshot(nodes: dict[int, int]) -> dict[str, dict[str, int]]:
    """Per-node command and script counters of a backend (bench/cluster.py)."""
    return _snapshot(nodes)


class ScenarioUnavailable(Exception):
    """A chosen scenario's module does not exist (yet)."""


def scenario_exists(name: str) -> bool:
    """True if the scenario's module can be found (without importing it)."""
    return importlib.util.find_spec(SCENARIOS[name].split(":")[0]) is not None


def resolve(name: str) -> Callable[[Context], dict]:
    """The scenario's run function, imported from its "module:function" registry entry."""
    module, _, func = SCENARIOS[name].partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise ScenarioUnavailable(f"scenario {name!r}: module {module} does not exist") from None
    return getattr(mod, func)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """CLI."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny numbers for the test suite (every scenario)")
    p.add_argument("--scenarios", default=None,
                   help=f"comma list of {','.join(SCENARIOS)} (default: all whose module exists)")
    p.add_argument("--targets", default="flashstock,flashstock_cluster,ceiling,pg_for_update,pg_conditional,pg_optimistic")
    p.add_argument("--connections", default="64,256", help="comma list")
    p.add_argument("--units", type=int, default=10_000)
    p.add_argument("--attempts", type=int, default=200_000)
    p.add_argument("--max-seconds", type=float, default=120.0, help="cap per load run (recorded if hit)")
    p.add_argument("--warmup", type=int, default=2_000, help="requests before each target's runs")
    p.add_argument("--generator", choices=sorted(GENERATORS), default="wrk")
    p.add_argument("--locust-bin", default="locust", help="for --generator locust")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--worker-connections", type=int, default=1000)
    p.add_argument("--redis-client", choices=["default", "tuned", "lean"], default="tuned")
    p.add_argument("--redis-pool", type=int, default=None,
                   help="max redis connections per worker (default: = --worker-connections, so no greenlet ever waits)")
    p.add_argument("--pg-pool", type=int, default=12, help="PostgreSQL connections per worker")
    p.add_argument("--pg-dsn", default="host=127.0.0.1 port=5432 user=postgres", help="without dbname")
    p.add_argument("--pg-admin-db", default="test", help="database to connect to for CREATE/DROP DATABASE")
    p.add_argument("--keep-db", action="store_true", help="do not drop the flashstock_bench* databases at the end")
    p.add_argument("--out-dir", type=Path, default=None, help="default bench/results (smoke: bench/results/tmp/smoke)")
    p.add_argument("--label", default=None, help="result file prefix (default hot_sku / smoke)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--mix-requests", type=int, default=None,
                   help="browse_mix: requests per target and connection count (default 100,000; smoke 3,000)")
    a = p.parse_args(argv)
    if a.smoke:
        a.units, a.attempts, a.warmup, a.max_seconds = 200, 1_500, 100, 20.0
        if a.connections == "64,256":
            a.connections = "8,32"
    a.out_dir = a.out_dir or (BENCH / "results" / "tmp" / "smoke" if a.smoke else BENCH / "results")
    a.label = a.label or ("smoke" if a.smoke else "hot_sku")
    a.redis_pool = a.redis_pool or a.worker_connections
    if a.scenarios is None:
        a.scenarios = ",".join(n for n in SCENARIOS if scenario_exists(n))
    unknown = [n for n in a.scenarios.split(",") if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    return a


def _versions() -> dict[str, str]:
    """Versions of what was measured."""
    import gevent
    import gunicorn
    import psycopg2
    import redis

    def cmd(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "n/a"

    return {
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "gunicorn": gunicorn.__version__,
        "gevent": gevent.__version__,
        "psycopg2": psycopg2.__version__.split()[0],
        "redis_server": cmd("redis-server", "--version"),
        "wrk": cmd("wrk", "-v").splitlines()[0] if cmd("wrk", "-v") else "n/a",
        "git_head": cmd("git", "-C", str(REPO), "rev-parse", "--short", "HEAD"),
    }


def run_target(
    procs: ProcessGroup, target: Target, env: Env, a: argparse.Namespace, backend: Backend, tmp: Path
) -> tuple[list[dict], dict[tuple[str, int], list[float]]]:
    """Start one target, run the sell-out at each connection count, stop it."""
    port = free_port()
    server = procs.start(target.name, target.command(env, port), cwd=REPO,
                         env=target.env_vars(env) if target.env_vars else None)
    runs: list[dict] = []
    curves: dict[tuple[str, int], list[float]] = {}
    try:
        wait_for_port(port, 30, server)
        generate = GENERATORS[a.generator]
        extra = {"locust_bin": a.locust_bin} if a.generator == "locust" else {}
        if a.warmup:
            target.seed(env, WARM_SKU, 10**9)
            warm = Load(port, WARM_SKU, 32, a.warmup, 30.0, f"{target.name}-warm")
            generate(procs, warm, tmp / f"{target.name}-warm.json", **extra)
        for conns in [int(c) for c in a.connections.split(",")]:
            target.seed(env, HOT_SKU, a.units)
            load = Load(port, HOT_SKU, conns, a.attempts, a.max_seconds, f"{target.name}-c{conns}")
            window = CpuWindow({"server": server.pid, **backend.cpu_pids()}, include_postgres=target.needs_postgres)
            shards0 = shard_snapshot(backend.nodes)
            window.start()
            t0 = time.monotonic()
            result = generate(procs, load, tmp / f"{load.tag}.json", **extra)
            cpu = merge_redis_cpu(window.stop(time.monotonic() - t0, result["generator_cpu_s"]))
            answered = sum(result["status"][k] for k in ("201", "409", "5xx", "other"))
            shards = shard_delta(shards0, shard_snapshot(backend.nodes), answered)
            holds = target.count_holds(env, HOT_SKU) if target.count_holds else None
            metrics = sellout_metrics(a.units, result, target.read_stock(env, HOT_SKU), holds)
            curves[(target.name, conns)] = result.pop("success_t")
            run = {"target": target.name, "connections": conns, "backend": backend.name, "load": result, "cpu": cpu,
                   "sellout": metrics, "shards": shards}
            run["failures"] = failures(run)
            runs.append(run)
            print(_line(run), flush=True)
    finally:
        procs.stop(server)
    return runs, curves


def _line(run: dict) -> str:
    """One human-readable summary line."""
    ld, m, st = run["load"], run["sellout"], run["load"]["status"]
    lat, own = ld["latency_ms"], ld.get("latency_ms_per_request") or {}
    return (
        f"{run['target']:15s} c={run['connections']:<4d} req={ld['requests']:<7d} rps={ld['rps']:<8.0f} "
        f"201={st['201']} 409={st['409']} 5xx={st['5xx']} other={st['other']} err={st['transport_errors']} "
        f"p50={lat['p50']}ms p99={lat['p99']}ms max={lat['max']}ms "
        f"per-request p50={own.get('p50')}ms p99={own.get('p99')}ms sellout={m['sellout_s']}s "
        f"over={m['oversell']} under={m['undersell']} gen_cpu={run['cpu']['generator_share_of_capacity']:.0%} "
        f"other_tenants_cpu={run['cpu']['other_share_of_capacity']:.0%} "
        f"scripts/answer={run['shards']['scripts_per_answer']} max_shard_share={run['shards']['max_shard_share']:.0%}"
        + (" TRUNCATED" if ld.get("truncated") else "")
        + (f" FAIL: {', '.join(run['failures'])}" if run["failures"] else "")
    )


def write_results(a: argparse.Namespace, doc: dict, curves: dict[tuple[str, int], list[float]]) -> list[Path]:
    """JSON (everything but timestamps), CSV summary, CSV of success timestamps, PNG plots."""
    a.out_dir.mkdir(parents=True, exist_ok=True)
    paths = [a.out_dir / f"{a.label}.json", a.out_dir / f"{a.label}_summary.csv", a.out_dir / f"{a.label}_success_t.csv"]
    paths[0].write_text(json.dumps(doc, indent=1))
    with paths[1].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["target", "connections", "requests", "rps", "s201", "s409", "s5xx", "other", "transport_errors",
                    "p50_ms", "p95_ms", "p99_ms", "max_ms", "sellout_s", "oversell", "undersell",
                    "generator_cpu_share", "other_cpu_share", "truncated",
                    "per_request_p50_ms", "per_request_p99_ms", "steady_p99_ms"])
        for r in doc["runs"]:
            ld, st, lat = r["load"], r["load"]["status"], r["load"]["latency_ms"]
            w.writerow([r["target"], r["connections"], ld["requests"], ld["rps"], st["201"], st["409"], st["5xx"],
                        st["other"], st["transport_errors"], lat["p50"], lat["p95"], lat["p99"], lat["max"],
                        r["sellout"]["sellout_s"], r["sellout"]["oversell"], r["sellout"]["undersell"],
                        r["cpu"]["generator_share_of_capacity"], r["cpu"]["other_share_of_capacity"],
                        ld.get("truncated", False), (ld.get("latency_ms_per_request") or {}).get("p50"),
                        (ld.get("latency_ms_per_request") or {}).get("p99"),
                        (ld.get("latency_ms_steady") or {}).get("p99")])
    with paths[2].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["target", "connections", "success_index", "t_s"])
        for (t, c), ts in curves.items():
            w.writerows([t, c, i + 1, v] for i, v in enumerate(ts))
    if not a.no_plots and doc["runs"]:
        paths += plots.write_all(doc["runs"], curves, a.out_dir, a.label)
    return paths


def hot_sku(ctx: Context) -> dict:
    """Scenario 1: every --targets target sells out one SKU at each --connections count."""
    a = ctx.args
    targets = all_targets()
    chosen = [targets[n] for n in a.targets.split(",")]
    needs_pg = any(t.needs_postgres for t in chosen)
    runs: list[dict] = []
    curves: dict[tuple[str, int], list[float]] = {}
    errors: list[str] = []
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cluster = None
    single = Backend("single", {ctx.redis_port: ctx.redis_pid})
    try:
        dsn = create_bench_db(a.pg_dsn, a.pg_admin_db) if needs_pg else None
        if any(t.cluster for t in chosen):
            cluster = start_cluster(ctx.tmp)
        env = Env(redis_port=ctx.redis_port, pg_dsn=dsn, workers=a.workers,
                  worker_connections=a.worker_connections, redis_client=a.redis_client,
                  redis_pool=a.redis_pool, pg_pool=a.pg_pool,
                  cluster_url=cluster.url if cluster else None,
                  cluster_ports=tuple(cluster.masters()) if cluster else ())
        for target in chosen:
            backend = single
            if target.cluster and cluster is not None:
                backend = Backend("cluster", {p: pid for p, pid in node_pids(cluster).items() if p in env.cluster_ports},
                                  cluster.url)
            try:
                r, c = run_target(ctx.procs, target, env, a, backend, ctx.tmp)
            except Exception as exc:  # noqa: BLE001 - one broken target must not hide the others
                errors.append(f"{target.name}: {exc!r}")
                print(f"{target.name}: FAILED {exc!r} (logs in {ctx.tmp})", file=sys.stderr, flush=True)
                continue
            runs += r
            curves.update(c)
    finally:
        if cluster is not None:
            cluster.stop()
        if needs_pg and not a.keep_db:
            drop_bench_db(a.pg_dsn, a.pg_admin_db)
    doc: dict[str, Any] = {
        "scenario": "hot_sku_sellout",
        "started": started,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "versions": _versions(),
        "cores": os.cpu_count(),
        "runs": runs,
        "ratios": ratios(runs),
        "errors": errors,
    }
    for p in write_results(a, doc, curves):
        print(f"wrote {p.relative_to(REPO) if p.is_relative_to(REPO) else p}")
    bad = errors + [f"{r['target']}@{r['connections']}: {f}" for r in runs for f in r["failures"]]
    return {"failures": bad, "summary": [_line(r) for r in runs]}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios; exit 1 if any reports a failure or crashes, 2 if one does not exist."""
    a = parse_args(argv)
    try:
        chosen = {name: resolve(name) for name in a.scenarios.split(",")}
    except ScenarioUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    missing = [n for n in SCENARIOS if n not in chosen and not scenario_exists(n)]
    if missing:
        print(f"not run (module not written yet): {', '.join(missing)}", flush=True)
    install_signal_handlers()
    tmp = BENCH / "results" / "tmp" / datetime.now().strftime("%Y%m%d-%H%M%S")
    tmp.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with ProcessGroup(tmp) as procs:
        try:
            redis_srv = start_redis(procs)
            ctx = Context(procs=procs, redis_port=redis_srv.port, redis_pid=redis_srv.pid, pg_base_dsn=a.pg_dsn,
                          pg_admin_db=a.pg_admin_db, smoke=a.smoke, out_dir=a.out_dir, tmp=tmp, args=a)
            for name, run in chosen.items():
                print(f"== {name}", flush=True)
                t0 = time.monotonic()
                try:
                    doc = run(ctx)
                    results[name] = {"failures": list(doc["failures"]), "summary": list(doc["summary"])}
                except Exception as exc:  # noqa: BLE001 - a crashed scenario must not hide the others
                    traceback.print_exc()
                    results[name] = {"failures": [f"crashed: {exc!r} (logs in {tmp})"], "summary": []}
                results[name]["seconds"] = round(time.monotonic() - t0, 1)
        finally:
            procs.stop_all()
    a.out_dir.mkdir(parents=True, exist_ok=True)
    (a.out_dir / RUN_INDEX).write_text(json.dumps({
        "started": started, "smoke": a.smoke, "cores": os.cpu_count(), "versions": _versions(),
        "scenarios": results}, indent=1))
    for name, res in results.items():
        print(f"== {name}: {len(res['failures'])} failure(s), {res['seconds']} s")
        for line in res["summary"]:
            print(f"  {line}")
    bad = [f"{name}: {f}" for name, res in results.items() for f in res["failures"]]
    for b in bad:
        print(f"FAIL {b}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
