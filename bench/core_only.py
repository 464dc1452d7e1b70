"""Scenario 6, core only: reservations/s of the inventory core without HTTP, against redis-benchmark.

    .venv/bin/python -m bench.core_only [--smoke] [--clients product,tuned]

The core (`Inventory(client).reservations.reserve` of one unit, a distinct user per call, one SKU
with plenty of stock) runs in one and in two processes, each process with its own Redis client, once
per client construction: `product` is inventory.store.connect_redis (what the core builds from
Settings), `tuned` is bench/ceiling/redis_clients.tuned_client. redis-benchmark then runs EVALSHA of the
same script with the KEYS/ARGV the core sends, captured from the core's own call, with a random token
and user per call, at 1, 2 and 50 connections. A sold-out phase (every call answered -3) runs both ways
too. After each phase the SKU's counters must add up: available + held == initial stock, held ==
successful calls, one hold per success.

Cluster phases (issue 11; `--no-cluster` skips them): a private 3-master cluster (bench/cluster.py)
and the product's own `RedisCluster` client, 16 partitions: one SKU with one and two processes, 64
SKUs balanced over the partitions with two processes, and a sold-out phase; the single node runs the
same spread phase. Every phase records each node's script calls before and after (`shards`), and
`cluster_ratios` divides each cluster phase by the single node's matching one.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import platform
import shutil
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

import redis

from bench.ceiling.redis_clients import default_client, lean_client, tuned_client
from bench.cluster import Backend, merge_redis_cpu, node_pids, shard_delta, snapshot, start_cluster, wipe_prefix
from bench.cpu import CpuWindow
from bench.generators import _wait_rusage
from bench.solo import delete_prefix, main, parser, write_json
from bench.suite import Context
from inventory import Inventory, Settings, ids
from inventory.buckets import Layout
from inventory.context import decode_hash
from inventory.errors import InventoryError, SoldOut
from inventory.holds import read_open_holds
from inventory.config import CLUSTER_PARTITIONS
from inventory.keys import PARTITION_DIGITS, KeySpace
from inventory.scripts import load_sources
from inventory.store import connect_redis

NAME = "core_only"
PREFIX = "fsco"  # own key prefix: scenarios may share the run's redis-server
TTL_S = 3600  # long enough that no hold expires (and is reclaimed) before its phase is checked
RB_KEYSPACE = 1_000_000_000  # redis-benchmark -r: __rand_int__ is random() % this, 12 digits
RAND = "__rand_int__"


@dataclass(frozen=True)
class Sizes:
    """How much each phase does."""

    core_ops: int  # reservations per core phase, split across its processes
    sold_out_ops: int  # attempts per sold-out phase
    rb_ops: int  # EVALSHA calls per redis-benchmark phase
    rb_connections: tuple[int, ...]


def sizes(smoke: bool, core_ops: int | None = None) -> Sizes:
    """Smoke: a few seconds in all; full: under a minute on a quiet 2-core box; core_ops scales a full
    run down (a busy shared box): that many reserves per core phase, half per sold-out phase, twice
    per redis-benchmark phase."""
    if core_ops:
        return Sizes(core_ops=core_ops, sold_out_ops=core_ops // 2, rb_ops=core_ops * 2, rb_connections=(1, 2, 50))
    if smoke:
        return Sizes(core_ops=1_500, sold_out_ops=500, rb_ops=5_000, rb_connections=(1, 2, 50))
    return Sizes(core_ops=20_000, sold_out_ops=10_000, rb_ops=50_000, rb_connections=(1, 2, 50))


CLIENTS: dict[str, Callable[[Backend], redis.Redis]] = {
    "product": lambda at: connect_redis(Settings(redis_url=f"redis://127.0.0.1:{at.port}/0")),
    "default": lambda at: default_client("127.0.0.1", at.port),
    "tuned": lambda at: tuned_client("127.0.0.1", at.port, 4),
    "lean": lambda at: lean_client("127.0.0.1", at.port, 4),
    # the product's client on the run's 3-master cluster (RedisCluster; 16 partitions)
    "cluster": lambda at: connect_redis(Settings(redis_url=at.cluster_url or "")),
}
SPREAD_PER_PARTITION = 4  # spread phases: 4 SKUs in each of the cluster's 16 partitions, 64 in all


# -- pure logic (tested in tests/bench) -------------------------------------------------------------


def benchmark_command(sha: str, keys: list[str], args: list[Any], token: str, user: str, run_tag: str) -> list[str]:
    """EVALSHA argv for redis-benchmark: the captured call with a random token and user per call.

    Each __rand_int__ is drawn separately, so the record key and the token differ per call and from
    each other; the script only needs both to be new. Two in a row give 24 digits. Two redis-benchmark
    runs can draw the same random() sequence (seen here: a whole run answered -8, token reused), so
    run_tag, unique per run, starts every token; the token keeps its last PARTITION_DIGITS (the
    partition it names), so the record stays where the core would put it. The product's tokens are
    24 characters (inventory/ids.py); these are 27 + len(run_tag), a few bytes more per record key.
    The record bucket's name holds no token, so every call packs its record into the captured
    token's bucket: one bucket in the partition's slot grows, where the product spreads them over 1,024.
    """
    if args[0] != token or args[1] != user:
        raise ValueError("captured ARGV does not start with token, user")
    if not 1 <= len(run_tag) <= 9 or not run_tag.isalnum():
        raise ValueError("run_tag must be 1-9 letters or digits")
    rand_token = run_tag + RAND * 2 + token[-PARTITION_DIGITS:]
    rand_user = "u" + RAND if len(user) == 13 else f"{user[:-12]}{RAND}"
    argv_keys = [k.replace(token, rand_token) for k in keys]
    argv_args = [rand_token, rand_user, *(str(a) for a in args[2:])]
    return ["EVALSHA", sha, str(len(keys)), *argv_keys, *argv_args]


def spread_skus(partitions: int, per_partition: int) -> tuple[str, ...]:
    """SKU names, `per_partition` in each of `partitions` partitions (KeySpace.partition_of).

    Balanced by construction: a partition is CRC16(name) mod partitions, and a few dozen sequential
    names land unevenly (64 'spread-NNN' names: 2 to 7 per partition, none in two of them)."""
    keys = KeySpace("x", partitions)
    taken: dict[int, list[str]] = {i: [] for i in range(partitions)}
    i = 0
    while any(len(v) < per_partition for v in taken.values()):
        name = f"spread-{i:05d}"
        bucket = taken[keys.partition_of(name)]
        if len(bucket) < per_partition:
            bucket.append(name)
        i += 1
    return tuple(name for i in range(partitions) for name in taken[i])


def parse_benchmark_csv(output: str) -> dict[str, float]:
    """The one result row of `redis-benchmark --csv` as floats (rps, avg/min/p50/p95/p99/max latency ms)."""
    lines = [line for line in output.splitlines() if line.startswith('"')]
    for i, line in enumerate(lines):
        if line.startswith('"test"') and i + 1 < len(lines):
            header, row = next(csv.reader(io.StringIO(line))), next(csv.reader(io.StringIO(lines[i + 1])))
            return {name: float(value) for name, value in zip(header[1:], row[1:])}
    raise ValueError("no CSV result in redis-benchmark output")


def counter_failures(label: str, fields: dict[str, str], initial: int, held: int, holds: int) -> list[str]:
    """Why a SKU's counters after a phase do not add up (empty when they do)."""
    got = {k: int(fields.get(k) or 0) for k in ("total", "avail", "held", "sold")}
    out = []
    if got["avail"] + got["held"] != initial:
        out.append(f"{label}: available {got['avail']} + held {got['held']} != initial {initial}")
    if got["held"] != held:
        out.append(f"{label}: held {got['held']} != successful calls {held}")
    if got["total"] != initial or got["sold"] != 0:
        out.append(f"{label}: total {got['total']} / sold {got['sold']} changed (expected {initial} / 0)")
    if holds != held:
        out.append(f"{label}: {holds} hold entries != successful calls {held}")
    return out


def ratios(phases: list[dict]) -> dict[str, dict[str, float | None]]:
    """Core ops/s over redis-benchmark ops/s, per client: matched concurrency and vs Redis's best."""
    def rate(driver: str, mode: str, width: int, client: str | None = None) -> float | None:
        for p in phases:
            if (p["driver"], p["mode"], p["width"], p.get("client")) == (driver, mode, width, client):
                return p["ops_per_s"]
        return None

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    rb_hold = [p["ops_per_s"] for p in phases if p["driver"] == "redis-benchmark" and p["mode"] == "hold"]
    best = max(rb_hold) if rb_hold else None
    out = {}
    for client in sorted({p["client"] for p in phases if p["driver"] == "core"}):
        one, two = rate("core", "hold", 1, client), rate("core", "hold", 2, client)
        out[client] = {
            "core_1proc_vs_rb_c1": div(one, rate("redis-benchmark", "hold", 1)),
            "core_2proc_vs_rb_c2": div(two, rate("redis-benchmark", "hold", 2)),
            "core_1proc_vs_rb_best": div(one, best),
            "core_2proc_vs_rb_best": div(two, best),
            "sold_out_core_1proc_vs_rb_c1": div(rate("core", "sold_out", 1, client),
                                                rate("redis-benchmark", "sold_out", 1)),
            "redispy_1proc_vs_rb_c1": div(rate("redis-py", "hold", 1, client), rate("redis-benchmark", "hold", 1)),
            "core_1proc_vs_redispy_1proc": div(one, rate("redis-py", "hold", 1, client)),
        }
    return out


# -- core phases ----------------------------------------------------------------------------------


def _worker(at: Backend, client: str, sku: str | tuple[str, ...], first_user: int, n: int, bare: bool,
            barrier: Any, results: Any) -> None:
    """One process: its own client; n reserves after the barrier, timed in-process.

    bare: the same EVALSHA through redis-py alone (new token and user per call, no core), to split
    the client's cost between redis-py and the core.
    """
    inv = Inventory(CLIENTS[client](at), Settings(key_prefix=PREFIX))
    inv.redis.ping()
    skus = (sku,) if isinstance(sku, str) else sku  # a spread phase cycles through its SKUs
    bare_call = _bare_call(inv, skus[0]) if bare else None

    def call(user: str, i: int) -> Any:
        if bare_call is not None:
            return bare_call(user)
        return inv.reservations.reserve(user, {skus[i % len(skus)]: 1}, ttl_seconds=TTL_S)
    barrier.wait(120)
    ok = sold_out = 0
    errors: dict[str, int] = {}
    cpu0, t0 = time.process_time(), time.monotonic()
    for i in range(first_user, first_user + n):
        try:
            call(f"u{i:012d}", i)
            ok += 1
        except SoldOut:
            sold_out += 1
        except InventoryError as error:
            errors[error.code] = errors.get(error.code, 0) + 1
    t1, cpu1 = time.monotonic(), time.process_time()
    results.put({"ok": ok, "sold_out": sold_out, "errors": errors, "start": t0, "end": t1, "cpu_s": cpu1 - cpu0})


def _bare_call(inv: Inventory, sku: str) -> Callable[[str], Any]:
    """redis-py EVALSHA of the captured reserve call with a fresh token and user; -3 raises SoldOut."""
    keys, args, token, _ = capture_reserve(PREFIX, sku)
    sha = inv.redis.script_load(load_sources()["reserve"].source)
    head, tail = keys[0], args[2:]

    def call(user_id: str) -> Any:
        fresh = ids.new_token()
        reply = inv.redis.evalsha(sha, len(keys), head.replace(token, fresh), *keys[1:], fresh, user_id, *tail)
        if int(reply[0]) == -3:
            raise SoldOut("sold out")
        return reply

    return call


def run_core(ctx: Context, client: str, processes: int, ops: int, sku: str | tuple[str, ...], mode: str,
             bare: bool = False, backend: Backend | None = None) -> dict:
    """Run ops reserves in `processes` spawned processes started together; wall = first start to last end.

    backend: the cluster (client "cluster"); default the run's single node. Its per-shard script
    counts before and after the phase are recorded under "shards"."""
    backend = backend or Backend("single", {ctx.redis_port: ctx.redis_pid})
    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(processes + 1), mp.Queue()
    shares = [ops // processes + (1 if i < ops % processes else 0) for i in range(processes)]
    workers = [mp.Process(target=_worker, args=(backend, client, sku, i * 10**11, n, bare, barrier, results),
                          daemon=True) for i, n in enumerate(shares)]
    window = CpuWindow(backend.cpu_pids(), include_postgres=False)
    shards0 = snapshot(backend.nodes)
    try:
        for w in workers:
            w.start()
        window.start()
        barrier.wait(120)
        got = [results.get(timeout=600) for _ in workers]
    finally:
        for w in workers:  # stop only the processes this phase started, by pid
            w.join(10)
            if w.is_alive():
                w.kill()
                w.join(5)
    wall = max(g["end"] for g in got) - min(g["start"] for g in got)
    cpu = sum(g["cpu_s"] for g in got)
    calls = sum(g["ok"] + g["sold_out"] + sum(g["errors"].values()) for g in got)
    errors: dict[str, int] = {}
    for g in got:
        for code, count in g["errors"].items():
            errors[code] = errors.get(code, 0) + count
    shards = shard_delta(shards0, snapshot(backend.nodes), calls)
    driver = "redis-py" if bare else "core"
    spread = not isinstance(sku, str)
    return {
        "label": f"{driver}-{client}-{processes}p-{mode}" + ("-spread" if spread else ""), "driver": driver,
        "client": client, "width": processes, "mode": mode + ("_spread" if spread else ""),
        "backend": backend.name, "sku": list(sku) if spread else sku, "calls": calls, "ok": sum(g["ok"] for g in got),
        "sold_out": sum(g["sold_out"] for g in got), "errors": errors, "wall_s": round(wall, 3),
        "ops_per_s": round(calls / wall, 1),
        "per_process_ops_per_s": [round((g["ok"] + g["sold_out"]) / (g["end"] - g["start"]), 1) for g in got],
        "client_cpu_s": round(cpu, 3), "client_cpu_us_per_op": round(cpu / calls * 1e6, 1),
        "cpu": merge_redis_cpu(window.stop(wall, cpu)), "shards": shards,
    }


# -- redis-benchmark phases -----------------------------------------------------------------------


def capture_reserve(prefix: str, sku: str) -> tuple[list[str], list[Any], str, str]:
    """KEYS and ARGV of the reserve script exactly as Reservations.reserve builds them; nothing is sent."""
    inv = Inventory(redis.Redis(host="127.0.0.1", port=1), Settings(key_prefix=prefix))
    calls: list[tuple[str, list[str], list[Any]]] = []

    def record(name: str, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        calls.append((name, list(keys), list(args)))
        return [0, 0, 0]

    inv.ctx.run = record  # type: ignore[method-assign,assignment]  # capture instead of sending
    inv.buckets.layouts = lambda skus, **_: {s: Layout(s, 0, 0, 1) for s in skus}  # type: ignore[method-assign]
    user = "u000000000000"
    reservation = inv.reservations.reserve(user, {sku: 1}, ttl_seconds=TTL_S)
    ((name, keys, args),) = calls
    assert name == "reserve"
    return keys, args, ids.token_of(reservation.id, "r") or "", user


def run_benchmark(ctx: Context, sha: str, sku: str, ops: int, connections: int, mode: str, run_tag: str) -> dict:
    """redis-benchmark EVALSHA of the core's reserve call; its CPU from rusage, ops/s from its CSV."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise RuntimeError("redis-benchmark not found (it ships with redis-server)")
    keys, args, token, user = capture_reserve(PREFIX, sku)
    label = f"rb-c{connections}-{mode}"
    argv = [exe, "-h", "127.0.0.1", "-p", str(ctx.redis_port), "-n", str(ops), "-c", str(connections),
            "-r", str(RB_KEYSPACE), "--csv", *benchmark_command(sha, keys, args, token, user, run_tag)]
    window = CpuWindow({"redis": ctx.redis_pid}, include_postgres=False)
    shards0 = snapshot({ctx.redis_port: ctx.redis_pid})
    window.start()
    t0 = time.monotonic()
    proc = ctx.procs.start(label, argv)
    rc, cpu = _wait_rusage(ctx.procs, proc, 600)
    wall = time.monotonic() - t0
    output = (ctx.procs.log_dir / f"{label}.log").read_text()
    if rc != 0:
        raise RuntimeError(f"redis-benchmark exited {rc}: {output[-300:]}")
    stats = parse_benchmark_csv(output)
    return {
        "label": label, "driver": "redis-benchmark", "client": None, "width": connections, "mode": mode,
        "sku": sku, "calls": ops, "wall_s": round(wall, 3), "ops_per_s": stats["rps"], "latency_ms": stats,
        "client_cpu_s": round(cpu, 3), "client_cpu_us_per_op": round(cpu / ops * 1e6, 1),
        "cpu": window.stop(wall, cpu), "command": argv[argv.index("EVALSHA"):],
        "shards": shard_delta(shards0, snapshot({ctx.redis_port: ctx.redis_pid}), ops),
    }


# -- scenario -------------------------------------------------------------------------------------


def seed(inv: Inventory, sku: str | tuple[str, ...], units: int) -> None:
    """Products on sale with `units` in stock each and no per-user limit, through the core."""
    for one in (sku,) if isinstance(sku, str) else sku:
        inv.catalog.configure(one, name=f"Core bench {one}", price=1999, currency="USD", per_user_limit=0)
        inv.catalog.adjust_stock(one, set_total=units, reason="seed")


def check(inv: Inventory, phase: dict, initial: int) -> list[str]:
    """Counters of the phase's SKU (summed over a spread phase's SKUs) against what its calls report."""
    skus = [phase["sku"]] if isinstance(phase["sku"], str) else phase["sku"]
    fields: dict[str, int] = {}
    holds = 0
    for sku in skus:
        keys = inv.keys.sku(sku)
        for k, v in decode_hash(inv.redis.hgetall(keys.stock)).items():
            if k in ("total", "avail", "held", "sold"):
                fields[k] = fields.get(k, 0) + int(v)
        holds += len(read_open_holds(inv.redis, keys))
    in_process = phase["driver"] != "redis-benchmark"
    held = phase["ok"] if in_process else (phase["calls"] if phase["mode"] == "hold" else 0)
    phase["counters"] = {k: fields.get(k, 0) for k in ("total", "avail", "held", "sold")} | {"holds": holds}
    out = counter_failures(phase["label"], {k: str(v) for k, v in fields.items()}, initial * len(skus), held, holds)
    if in_process:
        expected = 0 if phase["mode"] == "sold_out" else phase["calls"]
        if phase["ok"] != expected or phase["errors"]:
            out.append(f"{phase['label']}: {phase['ok']} holds of {phase['calls']} calls, errors {phase['errors']}")
    return out


def cluster_ratios(phases: list[dict]) -> dict[str, dict[str, float | None]]:
    """The cluster client's phases over the single node's matching phase (product client, same width and
    mode): ops/s, client CPU per op, Redis CPU per op (all nodes), and the busiest shard's share."""
    def find(client: str, width: int, mode: str) -> dict | None:
        return next((p for p in phases if (p["driver"], p["client"], p["width"], p["mode"]) == ("core", client, width, mode)),
                    None)

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    def redis_us(p: dict) -> float:
        return p["cpu"]["component_cpu_s"]["redis"] / max(p["calls"], 1) * 1e6

    out = {}
    for p in phases:
        if p["driver"] != "core" or p["client"] != "cluster":
            continue
        base = find("product", p["width"], p["mode"])
        if base is None:
            continue
        out[f"{p['width']}p-{p['mode']}"] = {
            "ops_per_s": div(p["ops_per_s"], base["ops_per_s"]),
            "client_cpu_per_op": div(p["client_cpu_us_per_op"], base["client_cpu_us_per_op"]),
            "redis_cpu_per_op": div(redis_us(p), redis_us(base)),
            "script_usec_per_op": div(p["shards"]["script_usec_per_answer"], base["shards"]["script_usec_per_answer"]),
            "max_shard_share": p["shards"]["max_shard_share"],
        }
    return out


def run(ctx: Context) -> dict:
    """Scenario entry point (bench/suite.py contract)."""
    size = sizes(ctx.smoke, getattr(ctx.args, "core_ops", None))
    clients = [c for c in str(getattr(ctx.args, "clients", "product,tuned")).split(",") if c and c != "cluster"]
    with_cluster = bool(getattr(ctx.args, "cluster", True))
    client = redis.Redis(host="127.0.0.1", port=ctx.redis_port)
    inv = Inventory(client, Settings(key_prefix=PREFIX))
    sha = client.script_load(load_sources()["reserve"].source)
    phases: list[dict] = []
    failures: list[str] = []
    spread = spread_skus(CLUSTER_PARTITIONS, SPREAD_PER_PARTITION)
    spread_stock = size.core_ops // len(spread) + 1000
    # (SKU or SKUs, phase taking sku=, initial stock per SKU, on the cluster?)
    plan: list[tuple[str | tuple[str, ...], Callable[..., dict], int, bool]] = []
    for name in clients:
        for procs in (1, 2):
            plan.append((f"core-{name}-{procs}p", partial(run_core, ctx, name, procs, size.core_ops, mode="hold"),
                         size.core_ops + 1000, False))
        plan.append((f"redispy-{name}-1p", partial(run_core, ctx, name, 1, size.core_ops, mode="hold", bare=True),
                     size.core_ops + 1000, False))
        plan.append((f"core-{name}-sold-out", partial(run_core, ctx, name, 1, size.sold_out_ops, mode="sold_out"), 0,
                     False))
    if "product" in clients:
        plan.append((spread, partial(run_core, ctx, "product", 2, size.core_ops, mode="hold"), spread_stock, False))
    for conns in size.rb_connections:
        plan.append((f"rb-c{conns}", partial(run_benchmark, ctx, sha, ops=size.rb_ops, connections=conns, mode="hold",
                                             run_tag=f"h{conns:02d}"), size.rb_ops + 1000, False))
    for conns in (1, max(size.rb_connections)):
        plan.append((f"rb-c{conns}-sold-out", partial(run_benchmark, ctx, sha, ops=size.sold_out_ops,
                                                      connections=conns, mode="sold_out", run_tag=f"s{conns:02d}"), 0,
                     False))
    cluster = None
    cluster_inv = None
    try:
        if with_cluster:
            cluster = start_cluster(ctx.tmp)
            masters = cluster.masters()
            backend = Backend("cluster", {p: pid for p, pid in node_pids(cluster).items() if p in masters}, cluster.url)
            settings = Settings(key_prefix=PREFIX, redis_url=cluster.url)
            cluster_inv = Inventory(connect_redis(settings), settings)
            for procs in (1, 2):
                plan.append((f"core-cluster-{procs}p", partial(run_core, ctx, "cluster", procs, size.core_ops,
                                                               mode="hold", backend=backend), size.core_ops + 1000, True))
            plan.append((spread, partial(run_core, ctx, "cluster", 2, size.core_ops, mode="hold", backend=backend),
                         spread_stock, True))
            plan.append(("core-cluster-sold-out", partial(run_core, ctx, "cluster", 1, size.sold_out_ops,
                                                          mode="sold_out", backend=backend), 0, True))
        for sku, phase_fn, initial, on_cluster in plan:
            target = cluster_inv if on_cluster and cluster_inv is not None else inv
            if on_cluster:
                wipe_prefix(backend.nodes, PREFIX)  # spread SKUs are reused: start from fresh keys
            else:
                for one in (sku,) if isinstance(sku, str) else sku:
                    keys = inv.keys.sku(one)
                    client.delete(keys.stock, keys.holds, keys.buyers, *keys.all_hold_buckets())
            seed(target, sku, initial)
            phase = phase_fn(sku=sku)
            failures += check(target, phase, initial)
            phases.append(phase)
            print(summary_line(phase), flush=True)
    finally:
        delete_prefix(client, PREFIX)
        if cluster is not None:
            cluster.stop()
    result = {
        "scenario": NAME, "smoke": ctx.smoke, "sizes": size.__dict__, "clients": clients,
        "cluster": {"masters": 3, "partitions": cluster_inv.keys.partitions} if cluster_inv else None,
        "spread_skus": len(spread),
        "versions": {"python": platform.python_version(), "redis_py": redis.__version__,
                     "redis_server": client.info("server")["redis_version"]},
        "phases": phases, "ratios": ratios([p for p in phases if p.get("backend", "single") == "single"
                                            and "spread" not in p["mode"]]),
        "cluster_ratios": cluster_ratios(phases), "failures": failures,
    }
    result["summary"] = summary(result)
    write_json(ctx, NAME, result)
    return result


def summary_line(p: dict) -> str:
    """One phase: ops/s, client and Redis CPU per op, script calls per op and the busiest shard's share."""
    cpu = p["cpu"]
    redis_us = cpu["component_cpu_s"]["redis"] / p["calls"] * 1e6
    shards = p.get("shards") or {}
    return (f"{p['label']:<32} {p['ops_per_s']:>9,.0f} {p['client_cpu_us_per_op']:>11.1f} µs"
            f" {redis_us:>10.1f} µs {cpu['other_share_of_capacity'] or 0:>8.0%}"
            f" {shards.get('scripts_per_answer', 0):>8} {shards.get('max_shard_share', 0):>8.0%}")


def summary(result: dict) -> list[str]:
    """Console lines: ops/s and CPU per phase, then the ratios."""
    lines = [f"{'phase':<32} {'ops/s':>9} {'client CPU/op':>14} {'redis CPU/op':>13} {'other CPU':>9}"
             f" {'scripts/op':>8} {'max shard':>8}"]
    lines += [summary_line(p) for p in result["phases"]]
    for client, r in result["ratios"].items():
        lines.append(f"ratios [{client}]: " + ", ".join(f"{k}={v}" for k, v in r.items()))
    for phase, r in result.get("cluster_ratios", {}).items():
        lines.append(f"cluster ÷ single [{phase}]: " + ", ".join(f"{k}={v}" for k, v in r.items()))
    return lines


if __name__ == "__main__":
    p = parser("python -m bench.core_only", __doc__ or "")
    p.add_argument("--clients", default="product,tuned", help=f"comma list of {sorted(set(CLIENTS) - {'cluster'})}")
    p.add_argument("--no-cluster", dest="cluster", action="store_false",
                   help="skip the cluster phases (a private 3-master cluster, the product's client)")
    p.add_argument("--core-ops", type=int, default=None, help="reserves per core phase (default 20,000; smoke 1,500)")
    raise SystemExit(main(NAME, run, p.parse_args()))
