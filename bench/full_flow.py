"""Scenario 2, full flow: reserve -> checkout -> signed payment webhook -> Celery persistence, on the real stack.

The API under gunicorn (gevent workers, the product's gunicorn.conf.py), a real Celery worker and beat
started as the Procfile does, the run's private redis-server (also the Celery broker, as the product
defaults to; `--broker amqp` uses RabbitMQ on localhost:5672) and a private PostgreSQL database
migrated with the product's migrations. Load: closed-loop virtual users (bench/flowgen.py).

Phases: warm-up; steady (persistence lag and arrival rate); stall (the worker is SIGSTOPped for a
while under continuing load, then resumed: how fast the backlog clears is the drain rate). Then the
outbox must drain and Redis, PostgreSQL and the client must agree exactly.

    .venv/bin/python -m bench.full_flow [--smoke] [--broker amqp] [--keep-db]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import redis
import redis.asyncio as aredis
from psycopg2 import sql

from bench import flow_plots
from bench.cpu import CpuWindow
from bench.flow_check import (
    STATUS_OF_PAY,
    ClientOrder,
    DbOrder,
    Sample,
    SkuState,
    drain_after_stall,
    expected_sold,
    lag_series,
    lag_trend,
    order_agreement,
    rate,
    stats,
    stock_agreement,
)
from bench.flowgen import Flow, FlowConfig, FlowRun, drive, summarize
from bench.procs import ProcessGroup, free_port, install_signal_handlers, wait_for_port
from bench.services import admin_conn, pg_dsn, start_redis
from bench.suite import Context
from bench.targets import BENCH_API_KEY, Env, _sqlalchemy_url, fs_env

NAME = "full_flow"
PREFIX = "fsflow"  # own key prefix on the shared private redis-server
# Own database per process: other scenarios drop theirs by name, and two runs may overlap on a shared box.
DB_NAME = f"flashstock_bench_flow_{os.getpid()}"
QUEUE = "flashstock-bench-flow"  # + a random suffix per run (RabbitMQ is shared)
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
BOUNDED_SKU = "flow-ltd"
REPO = Path(__file__).resolve().parent.parent
SAMPLE_EVERY_S = 0.1
# The order row's insert time, stamped by PostgreSQL itself; added to the bench database only.
LAG_COLUMN = "ALTER TABLE orders ADD COLUMN bench_persisted_at double precision " \
             "DEFAULT extract(epoch from clock_timestamp())"


@dataclass(frozen=True)
class Plan:
    """How big a run is."""

    connections: int
    warmup_s: float
    steady_s: float
    stall_lead_s: float  # load before the worker is stopped
    stall_s: float  # worker stopped (SIGSTOP) under continuing load
    recover_s: float  # load after it is resumed
    ample_skus: int  # SKUs with stock that never runs out
    ample_stock: int
    bounded_stock: int  # one more SKU that sells out (failed payments return units, which sell again)
    fail_ratio: float
    drain_timeout_s: float


SMOKE = Plan(connections=8, warmup_s=0.5, steady_s=4.0, stall_lead_s=0.5, stall_s=1.5, recover_s=2.0,
             ample_skus=3, ample_stock=100_000, bounded_stock=30, fail_ratio=0.2, drain_timeout_s=30.0)
FULL = Plan(connections=64, warmup_s=3.0, steady_s=60.0, stall_lead_s=3.0, stall_s=10.0, recover_s=20.0,
            ample_skus=3, ample_stock=10_000_000, bounded_stock=2_000, fail_ratio=0.2, drain_timeout_s=120.0)


@dataclass
class Stack:
    """The processes and addresses of one run."""

    api: subprocess.Popen
    worker: subprocess.Popen
    beat: subprocess.Popen
    port: int
    env: dict[str, str]
    db_url: str


# -- services --------------------------------------------------------------------------------------


def create_db(base_dsn: str, admin_db: str) -> str:
    """(Re)create this scenario's database, migrate it, add the lag column; return its SQLAlchemy URL."""
    from inventory.migrations import upgrade

    drop_db(base_dsn, admin_db)
    with admin_conn(base_dsn, admin_db) as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
    url = _sqlalchemy_url(pg_dsn(base_dsn, DB_NAME))
    upgrade(url)
    with psycopg2.connect(pg_dsn(base_dsn, DB_NAME)) as conn, conn.cursor() as cur:
        cur.execute(LAG_COLUMN)
    conn.close()
    return url


def drop_db(base_dsn: str, admin_db: str) -> None:
    """Drop this scenario's database (only ours, by its fixed name)."""
    with admin_conn(base_dsn, admin_db) as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))


def product_env(ctx: Context, db_url: str, broker: str, secret: str) -> dict[str, str]:
    """The hot-SKU target's settings (bench.targets.fs_env) on our prefix, database, queue and secret."""
    env = fs_env(Env(redis_port=ctx.redis_port, pg_dsn=pg_dsn(ctx.pg_base_dsn, DB_NAME),
                     workers=getattr(ctx.args, "workers", 2),
                     worker_connections=getattr(ctx.args, "worker_connections", 1000)))
    env.update(DATABASE_URL=db_url, KEY_PREFIX=PREFIX, WEBHOOK_SECRET=secret)
    if broker == "amqp":
        env["CELERY_BROKER_URL"] = AMQP_URL
    return env


def _wait_log(procs: ProcessGroup, name: str, proc: subprocess.Popen, marker: bytes, timeout_s: float) -> None:
    log = procs.log_dir / f"{name}.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}")
        if log.exists() and marker in log.read_bytes():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{name} not ready after {timeout_s}s; see {log}")


def start_stack(ctx: Context, env: dict[str, str], db_url: str, queue: str) -> Stack:
    """Worker and beat as in the Procfile, then the API as deployed (gunicorn.conf.py + wsgi:app)."""
    py, celery = sys.executable, [sys.executable, "-m", "celery", "-A", "sync.app"]
    worker = ctx.procs.start("flow-worker", [*celery, "worker", "-Q", queue, "--concurrency", "2",
                                             "--without-gossip", "--without-mingle", "-l", "INFO",
                                             "-n", f"flow-{os.getpid()}@%h"], cwd=REPO, env=env)
    _wait_log(ctx.procs, "flow-worker", worker, b" ready.", 60)
    beat = ctx.procs.start("flow-beat", [*celery, "beat", "-l", "INFO", "--pidfile=", "-s",
                                         str(ctx.tmp / "flow-beat-schedule")], cwd=REPO, env=env)
    port = free_port()
    api = ctx.procs.start("flow-api", [py, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
                                       "--backlog", "2048", "wsgi:app"], cwd=REPO, env=env)
    wait_for_port(port, 30, api)
    _wait_log(ctx.procs, "flow-beat", beat, b"beat: Starting", 30)
    return Stack(api, worker, beat, port, env, db_url)


def stop_stack(ctx: Context, stack: Stack) -> None:
    """API first (no new checkouts), then beat and worker; each by its process group."""
    _signal(stack.worker, signal.SIGCONT)
    for proc in (stack.api, stack.beat, stack.worker):
        ctx.procs.stop(proc)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _inventory(ctx: Context) -> Any:
    from inventory import Inventory
    from inventory.config import Settings

    return Inventory(redis.Redis(host="127.0.0.1", port=ctx.redis_port), Settings(key_prefix=PREFIX))


def seed(ctx: Context, stock: dict[str, int], broker_url: str, queue: str, timeout_s: float = 30.0) -> None:
    """Configure the SKUs through the core once the worker has set the Redis epoch, then wait until
    the seed events are persisted (a drain is queued the way beat would)."""
    from inventory.config import Settings
    from sync.app import make_celery

    inv = _inventory(ctx)
    _until(lambda: inv.redis.exists(inv.keys.epoch), timeout_s, "worker never initialised the Redis epoch")
    for sku, units in stock.items():
        inv.catalog.configure(sku, name=f"bench {sku}", price=1000)
        inv.catalog.adjust_stock(sku, set_total=units, reason="seed")
    app = make_celery(Settings(redis_url=f"redis://127.0.0.1:{ctx.redis_port}/0", key_prefix=PREFIX,
                               celery_queue=queue, celery_broker_url=broker_url))
    try:
        app.send_task("flashstock.persist_outbox", queue=queue)
    finally:
        app.close()
    _until(lambda: inv.redis.xlen(inv.keys.outbox) == 0, timeout_s, "seed events were not persisted")


def _until(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)
# -- load ------------------------------------------------------------------------------------------


@dataclass
class Phase:
    """One load phase: the client's record, wall-clock bounds, CPU, outbox samples, fault marks."""

    name: str
    run: FlowRun
    started: float
    ended: float
    cpu: dict
    samples: list[Sample]
    marks: dict[str, float]


async def _sample(port: int, stream: str, sink: list[Sample]) -> None:
    """Outbox length and entries ever added (one XINFO STREAM, so both from the same instant)."""
    client = aredis.Redis(host="127.0.0.1", port=port)
    try:
        while True:
            t = time.time()
            try:
                info = await client.xinfo_stream(stream)
                sink.append(Sample(t, int(info["length"]), int(info["entries-added"])))
            except redis.ResponseError:
                pass  # no stream yet
            await asyncio.sleep(SAMPLE_EVERY_S)
    finally:
        await client.aclose()


async def _stall(worker: subprocess.Popen, plan: Plan, marks: dict[str, float]) -> None:
    """Stop the whole worker (main process and pool children) for plan.stall_s, then resume it."""
    await asyncio.sleep(plan.stall_lead_s)
    _signal(worker, signal.SIGSTOP)
    marks["stopped"] = time.time()
    try:
        await asyncio.sleep(plan.stall_s)
    finally:
        _signal(worker, signal.SIGCONT)
        marks["resumed"] = time.time()


async def load(ctx: Context, plan: Plan, stack: Stack, cfg: FlowConfig, stream: str) -> dict[str, Phase]:
    """Warm-up, steady and stall phases back to back against the running stack."""
    phases: dict[str, Phase] = {}
    stall_total = plan.stall_lead_s + plan.stall_s + plan.recover_s
    for name, seconds in (("warmup", plan.warmup_s), ("steady", plan.steady_s), ("stall", stall_total)):
        samples: list[Sample] = []
        marks: dict[str, float] = {}

        async def during(name: str = name, samples: list[Sample] = samples, marks: dict = marks) -> None:
            side = [_sample(ctx.redis_port, stream, samples)]
            if name == "stall":
                side.append(_stall(stack.worker, plan, marks))
            await asyncio.gather(*side)

        window = CpuWindow({"api": stack.api.pid, "worker": stack.worker.pid, "beat": stack.beat.pid,
                            "redis": ctx.redis_pid}, include_postgres=True)
        window.start()
        t0, started = time.monotonic(), time.time()
        tag = f"{cfg.tag}{len(phases)}"  # user ids (and so event ids) unique across phases
        run = await drive(replace(cfg, tag=tag), plan.connections, seconds, during=during)
        ended = time.time()
        cpu = window.stop(time.monotonic() - t0, run.cpu_s)
        phases[name] = Phase(name, run, started, ended, cpu, samples, marks)
        s = summarize(run, plan.connections)
        print(f"{NAME} {name:7s} flows={s['flows']} completed/s={s['completed_flows_per_s']} "
              f"req/s={s['requests_per_s']} outcomes={s['outcomes']}", flush=True)
    return phases


# -- after the load --------------------------------------------------------------------------------


def wait_drained(inv: Any, timeout_s: float, sink: list[Sample]) -> tuple[bool, float]:
    """Poll until the outbox is empty with nothing pending three times in a row (bounded)."""
    from inventory.persistence import GROUP

    t0, empty = time.monotonic(), 0
    while time.monotonic() - t0 < timeout_s:
        info = inv.redis.xinfo_stream(inv.keys.outbox)
        sink.append(Sample(time.time(), int(info["length"]), int(info["entries-added"])))
        pending = int(inv.redis.xpending(inv.keys.outbox, GROUP)["pending"])
        empty = empty + 1 if info["length"] == 0 and pending == 0 else 0
        if empty >= 3:
            return True, time.monotonic() - t0
        time.sleep(SAMPLE_EVERY_S)
    return False, time.monotonic() - t0


@dataclass
class Snapshot:
    """Both stores after the drain."""

    orders: dict[str, DbOrder]
    persisted_at: dict[str, float]
    ledger: dict[str, tuple[int, int]]
    payments: dict[str, int]
    rejects: int
    product_drifts: list[str]
    redis: dict[str, SkuState | None]
    outbox_len: int
    outbox_pending: int
    reconcile: dict


def collect(ctx: Context, inv: Any, db_url: str, skus: list[str]) -> Snapshot:
    """Read PostgreSQL and Redis, then run a full reconciliation pass with repair disabled."""
    from inventory.context import decode_hash
    from inventory.db import make_engine, make_session_factory
    from inventory.persistence import GROUP
    from inventory.reconcile import run_reconciliation

    conn = psycopg2.connect(pg_dsn(ctx.pg_base_dsn, DB_NAME))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT o.id, o.user_id, o.status, o.bench_persisted_at, l.sku, l.qty FROM orders o "
                    "LEFT JOIN order_lines l ON l.order_id = o.id ORDER BY o.id, l.sku")
        orders: dict[str, DbOrder] = {}
        persisted_at: dict[str, float] = {}
        for oid, user, status, at, sku, qty in cur.fetchall():
            prior = orders.get(oid)
            lines = (prior.lines if prior else ()) + (((sku, int(qty)),) if sku is not None else ())
            orders[oid] = DbOrder(oid, user, status, lines)
            persisted_at[oid] = float(at)
        cur.execute("SELECT sku, sum(total_delta), sum(sold_delta) FROM stock_ledger GROUP BY sku")
        ledger = {sku: (int(t), int(s)) for sku, t, s in cur.fetchall()}
        cur.execute("SELECT result, count(*) FROM payment_events GROUP BY result")
        payments = {r: int(n) for r, n in cur.fetchall()}
        cur.execute("SELECT count(*) FROM outbox_rejects")
        rejects = int(cur.fetchone()[0])
        cur.execute("SELECT r.id, d.sku, d.kind, d.detail FROM reconcile_drifts d "
                    "JOIN reconcile_runs r ON r.id = d.run_id ORDER BY r.id")
        drifts = [f"run {r} {sku} {kind}: {detail}" for r, sku, kind, detail in cur.fetchall()]
    conn.close()
    state: dict[str, SkuState | None] = {}
    for sku in skus:
        f = decode_hash(inv.redis.hgetall(inv.keys.sku(sku).stock))
        state[sku] = SkuState(*(int(f.get(k) or 0) for k in ("total", "avail", "held", "sold"))) if f else None
    length = int(inv.redis.xlen(inv.keys.outbox))
    pending = int(inv.redis.xpending(inv.keys.outbox, GROUP)["pending"])
    engine = make_engine(db_url, pool_size=2)
    try:
        report = run_reconciliation(inv, make_session_factory(engine), repair=False, full=True)
    finally:
        engine.dispose()
    recon = {"clean": report.clean, "skus_checked": report.skus_checked, "skus_busy": report.skus_busy,
             "skipped": report.skipped, "drifts": [f"{d.sku} {d.kind}: {d.detail}" for d in report.drifts]}
    return Snapshot(orders, persisted_at, ledger, payments, rejects, drifts, state, length, pending, recon)


def _log_errors(path: Path) -> list[str]:
    """ERROR lines and tracebacks in a worker/beat log."""
    if not path.exists():
        return []
    return [line for line in path.read_text(errors="replace").splitlines()
            if "ERROR" in line or line.startswith("Traceback")]


# -- evaluation ------------------------------------------------------------------------------------


def client_orders(flows: list[Flow]) -> list[ClientOrder]:
    """Orders the client saw accepted, with the status the webhook answered (None if it did not)."""
    return [ClientOrder(f.order_id, f.user, f.sku, 1, f.status if f.outcome == "completed" else None)
            for f in flows if f.order_id is not None]


def phase_failures(name: str, run: FlowRun) -> list[str]:
    """5xx, transport errors, unexpected answers and wrong payment results in one phase."""
    out = []
    for step, s in run.steps.items():
        fives = sum(v for k, v in s.status.items() if k >= 500)
        if fives:
            out.append(f"{name}/{step}: {fives} 5xx")
        if s.transport_errors:
            out.append(f"{name}/{step}: {s.transport_errors} transport errors")
    bad: dict[str, int] = {}
    for f in run.flows:
        if f.outcome not in ("completed", "sold_out"):
            bad[f.outcome] = bad.get(f.outcome, 0) + 1
        elif f.outcome == "completed" and f.status != STATUS_OF_PAY[f.pay]:
            bad[f"{f.pay}->{f.status}"] = bad.get(f"{f.pay}->{f.status}", 0) + 1
    if bad:
        codes = {step: s.codes for step, s in run.steps.items() if s.codes}
        out.append(f"{name}: unexpected flow outcomes {bad} (error codes {codes})")
    return out


def evaluate(plan: Plan, phases: dict[str, Phase], stock: dict[str, int], snap: Snapshot, drained: bool,
             drain_s: float) -> tuple[dict, list[list], list[list]]:
    """The result document, plus the rows of the lag CSV and the backlog CSV."""
    flows = [f for p in phases.values() for f in p.run.flows]
    orders = client_orders(flows)
    failures = [f for p in phases.values() for f in phase_failures(p.name, p.run)]
    if not drained:
        failures.append(f"outbox not drained within {plan.drain_timeout_s}s: {snap.outbox_len} entries, "
                        f"{snap.outbox_pending} pending")
    failures += order_agreement(orders, snap.orders)
    held: dict[str, int] = {}
    for f in flows:
        if f.reservation_id is not None and f.order_id is None:
            held[f.sku] = held.get(f.sku, 0) + 1
    failures += stock_agreement(stock, expected_sold(orders), held, snap.redis, snap.ledger)
    webhooks = {"paid": sum(o.status == "paid" for o in orders),
                "failed": sum(o.status == "payment_failed" for o in orders)}
    if {k: snap.payments.get(k, 0) for k in webhooks} != webhooks or set(snap.payments) - set(webhooks):
        failures.append(f"payment_events {snap.payments} != applied webhooks {webhooks}")
    if snap.outbox_len or snap.outbox_pending:
        failures.append(f"outbox after drain: {snap.outbox_len} entries, {snap.outbox_pending} pending")
    if snap.rejects:
        failures.append(f"{snap.rejects} outbox entries rejected as malformed")
    if snap.product_drifts:
        failures.append(f"the product's own reconcile runs found drift during the run: {snap.product_drifts[:5]}")
    rc = snap.reconcile
    if not rc["clean"] or rc["skus_busy"] or rc["skipped"]:
        failures.append(f"reconcile (full, no repair) not clean: {rc}")

    lag_rows, points, from_sent = [], {name: [] for name in phases}, {name: [] for name in phases}
    t_base = phases["warmup"].started
    for p in phases.values():
        for f in p.run.flows:
            if f.order_id is not None and f.order_id in snap.persisted_at and f.t_checkout is not None:
                lag_ms = (snap.persisted_at[f.order_id] - f.t_checkout) * 1000
                sent_ms = (snap.persisted_at[f.order_id] - f.t_checkout_sent) * 1000
                points[p.name].append((f.t_checkout, lag_ms))
                from_sent[p.name].append(sent_ms)
                lag_rows.append([p.name, f.index, f.order_id, f.sku, f.pay, f.status,
                                 round(f.t_checkout - t_base, 4), round(lag_ms, 2), round(sent_ms, 2)])
    backlog_rows = [[p.name, round(s.t - t_base, 3), s.length, s.added] for p in phases.values() for s in p.samples]

    steady, stall = phases["steady"], phases["stall"]
    arrival = rate(steady.samples, steady.started, steady.ended, "added")
    steady_backlog = stats([s.length for s in steady.samples])
    clear_below = max(int(steady_backlog["p99"] or 0), 10)
    drain = drain_after_stall(stall.samples, stall.marks.get("resumed", stall.ended), clear_below) \
        if "resumed" in stall.marks else {}
    drain_rate = drain.get("drain_entries_per_s")
    ratio = round(drain_rate / arrival, 2) if drain_rate and arrival else None
    trend = lag_trend(points["steady"])
    first, last = trend["first"], trend["last"]
    lag_bounded = None if first["p99"] is None else last["p99"] <= 2 * first["p99"] + 100
    persistence = {
        # from the checkout's 202 reaching the client (negative: the row was in before the answer arrived)
        "lag_ms": {name: stats([lag for _, lag in pts]) for name, pts in points.items()},
        "lag_from_request_ms": {name: stats(v) for name, v in from_sent.items()},
        "lag_trend_steady": trend,
        "lag_series_steady": lag_series(points["steady"], steady.started),
        "steady_backlog_entries": steady_backlog,
        "steady_arrival_entries_per_s": round(arrival, 1) if arrival else None,
        "steady_drain_entries_per_s": round(rate(steady.samples, steady.started, steady.ended, "removed") or 0, 1),
        "stall": {"seconds": plan.stall_s, "clear_below_entries": clear_below, **drain,
                  # seconds since the warm-up started, like the CSVs' time columns
                  **{f"{k}_t_s": round(v - t_base, 3) for k, v in stall.marks.items()}},
        "drain_over_arrival": ratio,
        "entries_per_order": 2,
        "drain_after_load_s": round(drain_s, 3),
    }
    targets = {
        "drain_rate_at_least_3x_arrival": {"met": ratio is not None and ratio >= 3, "ratio": ratio},
        "lag_does_not_grow": {"met": lag_bounded, "rule": "last-10% p99 <= 2 x first-10% p99 + 100 ms",
                              "first_p99_ms": first["p99"], "last_p99_ms": last["p99"]},
    }
    doc = {
        "scenario": NAME,
        "plan": asdict(plan),
        "skus": stock,
        "phases": {name: {**summarize(p.run, plan.connections), "cpu": p.cpu} for name, p in phases.items()},
        "persistence": persistence,
        "agreement": {
            "client_orders": len(orders), "db_orders": len(snap.orders), "payment_events": snap.payments,
            "redis": {k: asdict(v) if v else None for k, v in snap.redis.items()},
            "ledger_total_sold": snap.ledger, "outbox_len": snap.outbox_len, "outbox_pending": snap.outbox_pending,
            "outbox_rejects": snap.rejects, "product_reconcile_drifts": snap.product_drifts,
            "reconcile_no_repair": snap.reconcile,
        },
        "targets": targets,
        "failures": failures,
    }
    doc["summary"] = summary_lines(doc)
    return doc, lag_rows, backlog_rows


def summary_lines(doc: dict) -> list[str]:
    """Short console lines."""
    st, pe, ag = doc["phases"]["steady"], doc["persistence"], doc["agreement"]
    lat = {k: v["latency_ms"] for k, v in st["steps"].items()}
    lag, tr = pe["lag_ms"]["steady"], pe["lag_trend_steady"]
    p = {k: f"{v['p50']}/{v['p99']}" for k, v in lat.items()}
    throughput = (f"steady: {st['completed_flows_per_s']} flows/s, {st['requests_per_s']} req/s over "
                  f"{st['connections']} users; p50/p99 ms reserve {p['reserve']}, checkout {p['checkout']}, "
                  f"webhook {p['webhook']}")
    persistence = (f"persistence lag ms p50/p99 {lag['p50']}/{lag['p99']} (p99 first 10% {tr['first']['p99']}, "
                   f"last 10% {tr['last']['p99']}); drain {pe['stall'].get('drain_entries_per_s')} entries/s vs "
                   f"arrival {pe['steady_arrival_entries_per_s']}/s = {pe['drain_over_arrival']}x")
    agreement = (f"agreement: {ag['client_orders']} client orders, {ag['db_orders']} in Postgres, reconcile "
                 f"clean={ag['reconcile_no_repair']['clean']}, outbox {ag['outbox_len']} left/"
                 f"{ag['outbox_pending']} pending")
    return [throughput, persistence, agreement] + [f"FAIL {f}" for f in doc["failures"]]


def write_results(out_dir: Path, doc: dict, lag_rows: list[list], backlog_rows: list[list],
                  plots: bool = True) -> list[Path]:
    """full_flow.json, full_flow_lag.csv, full_flow_backlog.csv, full_flow_lag.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{NAME}.json", out_dir / f"{NAME}_lag.csv", out_dir / f"{NAME}_backlog.csv"]
    paths[0].write_text(json.dumps(doc, indent=1))
    for path, head, rows in ((paths[1], ["phase", "flow", "order_id", "sku", "pay", "status", "t_checkout_s",
                                         "lag_ms", "lag_from_request_ms"], lag_rows),
                             (paths[2], ["phase", "t_s", "outbox_len", "entries_added"], backlog_rows)):
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(head)
            w.writerows(rows)
    if plots:
        paths.append(flow_plots.lag_over_time(lag_rows, backlog_rows, doc, out_dir / f"{NAME}_lag.png"))
    return paths


# -- entry points ----------------------------------------------------------------------------------


def run(ctx: Context) -> dict:
    """The scenario (bench/suite.py contract): start the stack, load it, drain, check, write results."""
    plan = SMOKE if ctx.smoke else FULL
    if getattr(ctx.args, "flow_connections", None):
        plan = replace(plan, connections=ctx.args.flow_connections)
    if getattr(ctx.args, "flow_steady_seconds", None):
        plan = replace(plan, steady_s=ctx.args.flow_steady_seconds)
    broker = getattr(ctx.args, "flow_broker", "redis")
    queue = f"{QUEUE}-{secrets.token_hex(3)}"
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    stock = {f"flow-{i}": plan.ample_stock for i in range(plan.ample_skus)} | {BOUNDED_SKU: plan.bounded_stock}
    started = datetime.now(UTC).isoformat(timespec="seconds")
    db_url = create_db(ctx.pg_base_dsn, ctx.pg_admin_db)
    stack = None
    try:
        env = product_env(ctx, db_url, broker, secret) | {"CELERY_QUEUE": queue}
        stack = start_stack(ctx, env, db_url, queue)
        seed(ctx, stock, env.get("CELERY_BROKER_URL", ""), queue)
        inv = _inventory(ctx)
        cfg = FlowConfig("127.0.0.1", stack.port, BENCH_API_KEY, secret, tuple(stock), frozenset({BOUNDED_SKU}),
                         plan.fail_ratio, tag=f"f{secrets.token_hex(2)}")
        phases = asyncio.run(load(ctx, plan, stack, cfg, inv.keys.outbox))
        drained, drain_s = wait_drained(inv, plan.drain_timeout_s, phases["stall"].samples)
        snap = collect(ctx, inv, db_url, list(stock))
        log_errors = {name: _log_errors(ctx.procs.log_dir / f"{name}.log") for name in ("flow-worker", "flow-beat")}
    finally:
        if stack is not None:
            stop_stack(ctx, stack)
        if broker == "amqp":
            _delete_amqp_queue(queue)
        if not getattr(ctx.args, "keep_db", False):
            drop_db(ctx.pg_base_dsn, ctx.pg_admin_db)
    doc, lag_rows, backlog_rows = evaluate(plan, phases, stock, snap, drained, drain_s)
    doc.update(started=started, broker=broker, smoke=ctx.smoke, versions=_versions(), cores=os.cpu_count(),
               log_errors={k: v[:20] for k, v in log_errors.items()}, logs=str(ctx.tmp))
    for name, lines in log_errors.items():
        if lines:
            doc["failures"].append(f"{name}: {len(lines)} ERROR lines, first: {lines[0][:300]}")
            doc["summary"].append(f"FAIL {doc['failures'][-1]}")
    for path in write_results(ctx.out_dir, doc, lag_rows, backlog_rows, not getattr(ctx.args, "no_plots", False)):
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return doc


def _delete_amqp_queue(queue: str) -> None:
    from kombu import Connection

    try:
        with Connection(AMQP_URL, connect_timeout=5) as conn:
            conn.default_channel.queue_delete(queue)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the run's result
        print(f"could not delete RabbitMQ queue {queue}: {exc!r}", file=sys.stderr)


def _versions() -> dict[str, str]:
    import celery
    import gevent
    import gunicorn
    import kombu

    return {"python": sys.version.split()[0], "redis_py": redis.__version__, "celery": celery.__version__,
            "kombu": kombu.__version__, "gunicorn": gunicorn.__version__, "gevent": gevent.__version__,
            "psycopg2": psycopg2.__version__.split()[0]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """CLI of the standalone run."""
    p = argparse.ArgumentParser(prog="python -m bench.full_flow", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="a few seconds, small numbers")
    p.add_argument("--broker", dest="flow_broker", choices=["redis", "amqp"], default="redis",
                   help="Celery broker: the run's private Redis (the product's default) or RabbitMQ on :5672")
    p.add_argument("--connections", dest="flow_connections", type=int, default=None, help="virtual users")
    p.add_argument("--steady-seconds", dest="flow_steady_seconds", type=float, default=None)
    p.add_argument("--pg-dsn", default="host=127.0.0.1 port=5432 user=postgres", help="without dbname")
    p.add_argument("--pg-admin-db", default="test", help="database to connect to for CREATE/DROP DATABASE")
    p.add_argument("--keep-db", action="store_true", help=f"do not drop {DB_NAME} at the end")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="default bench/results (smoke: bench/results/tmp/smoke)")
    a = p.parse_args(argv)
    a.out_dir = a.out_dir or (REPO / "bench" / "results" / ("tmp/smoke" if a.smoke else ""))
    return a


def main(argv: list[str] | None = None) -> int:
    """Standalone: own redis-server and database, the scenario, exit 1 on any failure."""
    a = parse_args(argv)
    install_signal_handlers()
    tmp = REPO / "bench" / "results" / "tmp" / f"{NAME}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    with ProcessGroup(tmp) as procs:
        try:
            srv = start_redis(procs)
            ctx = Context(procs=procs, redis_port=srv.port, redis_pid=srv.pid, pg_base_dsn=a.pg_dsn,
                          pg_admin_db=a.pg_admin_db, smoke=a.smoke, out_dir=a.out_dir, tmp=tmp, args=a)
            doc = run(ctx)
        finally:
            procs.stop_all()
    for line in doc["summary"]:
        print(line)
    return 1 if doc["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
