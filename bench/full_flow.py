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

import psycopg2
import redis
import redis.asyncio as aredis

from bench import flow_plots
from bench.cpu import CpuWindow
from bench.flow_check import (
    STATUS_OF_PAY,
    ClientOrder,
    Sample,
    drain_after_stall,
    expected_sold,
    lag_series,
    lag_trend,
    order_agreement,
    rate,
    stats,
    stock_agreement,
)
from bench.flow_stack import (
    DB_NAME,
    REPO,
    SAMPLE_EVERY_S,
    Snapshot,
    Stack,
    collect,
    create_db,
    delete_amqp_queue,
    drop_db,
    flow_inventory,
    log_errors,
    persist_task_stats,
    product_env,
    seed,
    signal_group,
    start_stack,
    stop_stack,
    wait_drained,
)
from bench.flowgen import Flow, FlowConfig, FlowRun, drive, summarize
from bench.procs import ProcessGroup, install_signal_handlers
from bench.services import start_redis
from bench.suite import Context
from bench.targets import BENCH_API_KEY

NAME = "full_flow"
QUEUE = "flashstock-bench-flow"  # + a random suffix per run (RabbitMQ is shared)
BOUNDED_SKU = "flow-ltd"


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
    signal_group(worker, signal.SIGSTOP)
    marks["stopped"] = time.time()
    try:
        await asyncio.sleep(plan.stall_s)
    finally:
        signal_group(worker, signal.SIGCONT)
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
    persistence, targets, lag_rows, backlog_rows = persistence_figures(plan, phases, snap, drain_s)
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


def persistence_figures(plan: Plan, phases: dict[str, Phase], snap: Snapshot,
                        drain_s: float) -> tuple[dict, dict, list[list], list[list]]:
    """Lag per order, its trend, arrival and drain rates, the two persistence targets; CSV rows."""
    lag_rows, points, from_sent = [], {name: [] for name in phases}, {name: [] for name in phases}
    t_base = phases["warmup"].started
    for p in phases.values():
        for f in p.run.flows:
            if f.order_id is not None and f.order_id in snap.persisted_at and f.t_checkout is not None:
                lag_ms = (snap.persisted_at[f.order_id] - f.t_checkout) * 1000
                sent_ms = (snap.persisted_at[f.order_id] - f.t_checkout_sent) * 1000
                points[p.name].append((f.t_checkout, lag_ms))
                from_sent[p.name].append((f.t_checkout, sent_ms))
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
        "lag_from_request_ms": {name: stats([lag for _, lag in pts]) for name, pts in from_sent.items()},
        "lag_trend_steady": trend,
        "lag_trend_steady_from_request": lag_trend(from_sent["steady"]),
        "lag_series_steady": lag_series(points["steady"], steady.started),
        "steady_backlog_entries": steady_backlog,
        "steady_arrival_entries_per_s": round(arrival, 1) if arrival else None,
        "steady_drain_entries_per_s": round(rate(steady.samples, steady.started, steady.ended, "removed") or 0, 1),
        "stall": {"seconds": plan.stall_s, "clear_below_entries": clear_below, **drain,
                  # seconds since the warm-up started, like the CSVs' time columns
                  **{f"{k}_t_s": round(v - t_base, 3) for k, v in stall.marks.items()}},
        "drain_over_arrival": ratio,
        # CPU the Celery worker (main + pool) spent per outbox entry persisted in the steady phase
        "steady_worker_cpu_us_per_entry": _cpu_per_entry(steady),
        "entries_per_order": 2,
        "drain_after_load_s": round(drain_s, 3),
    }
    targets = {
        "drain_rate_at_least_3x_arrival": {"met": ratio is not None and ratio >= 3, "ratio": ratio},
        "lag_does_not_grow": {"met": lag_bounded, "rule": "last-10% p99 <= 2 x first-10% p99 + 100 ms",
                              "first_p99_ms": first["p99"], "last_p99_ms": last["p99"]},
    }
    return persistence, targets, lag_rows, backlog_rows


def _cpu_per_entry(phase: Phase) -> float | None:
    moved = rate(phase.samples, phase.started, phase.ended, "removed")
    if not moved:
        return None
    return round(phase.cpu["component_cpu_s"]["worker"] / (moved * (phase.ended - phase.started)) * 1e6, 1)


def summary_lines(doc: dict) -> list[str]:
    """Short console lines."""
    st, pe, ag = doc["phases"]["steady"], doc["persistence"], doc["agreement"]
    lat = {k: v["latency_ms"] for k, v in st["steps"].items()}
    lag, tr = pe["lag_ms"]["steady"], pe["lag_trend_steady"]
    p = {k: f"{v['p50']}/{v['p99']}" for k, v in lat.items()}
    throughput = (f"steady: {st['completed_flows_per_s']} flows/s, {st['requests_per_s']} req/s over "
                  f"{st['connections']} users; p50/p99 ms reserve {p['reserve']}, checkout {p['checkout']}, "
                  f"webhook {p['webhook']}")
    req = pe["lag_from_request_ms"]["steady"]
    persistence = (f"persistence lag ms p50/p99 from the 202 {lag['p50']}/{lag['p99']} (p99 first 10% "
                   f"{tr['first']['p99']}, last 10% {tr['last']['p99']}), from the checkout request "
                   f"{req['p50']}/{req['p99']}; drain {pe['stall'].get('drain_entries_per_s')} entries/s vs arrival "
                   f"{pe['steady_arrival_entries_per_s']}/s = {pe['drain_over_arrival']}x")
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
        inv = flow_inventory(ctx)
        cfg = FlowConfig("127.0.0.1", stack.port, BENCH_API_KEY, secret, tuple(stock), frozenset({BOUNDED_SKU}),
                         plan.fail_ratio, tag=f"f{secrets.token_hex(2)}")
        phases = asyncio.run(load(ctx, plan, stack, cfg, inv.keys.parts[0].outbox))
        drained, drain_s = wait_drained(inv, plan.drain_timeout_s, phases["stall"].samples)
        snap = collect(ctx, inv, db_url, list(stock))
        errors = {name: log_errors(ctx.procs.log_dir / f"{name}.log") for name in ("flow-worker", "flow-beat")}
        tasks = persist_task_stats(ctx.procs.log_dir / "flow-worker.log")
    finally:
        if stack is not None:
            stop_stack(ctx, stack)
        if broker == "amqp":
            delete_amqp_queue(queue)
        if not getattr(ctx.args, "keep_db", False):
            drop_db(ctx.pg_base_dsn, ctx.pg_admin_db)
    doc, lag_rows, backlog_rows = evaluate(plan, phases, stock, snap, drained, drain_s)
    doc.update(started=started, broker=broker, smoke=ctx.smoke, versions=_versions(), cores=os.cpu_count(),
               log_errors={k: v[:20] for k, v in errors.items()}, logs=str(ctx.tmp), persist_tasks=tasks)
    for name, lines in errors.items():
        if lines:
            doc["failures"].append(f"{name}: {len(lines)} ERROR lines, first: {lines[0][:300]}")
            doc["summary"].append(f"FAIL {doc['failures'][-1]}")
    for path in write_results(ctx.out_dir, doc, lag_rows, backlog_rows, not getattr(ctx.args, "no_plots", False)):
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return doc


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
