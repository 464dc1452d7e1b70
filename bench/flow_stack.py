"""The real stack of the full-flow scenario: its database, API, Celery worker and beat; seeding; the
state of Redis and PostgreSQL after the load."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import redis
from psycopg2 import sql

from bench.flow_check import DbOrder, Sample, SkuState
from bench.procs import ProcessGroup, free_port, wait_for_port
from bench.services import admin_conn, pg_dsn
from bench.suite import Context
from bench.targets import Env, _sqlalchemy_url, fs_env

PREFIX = "fsflow"  # own key prefix on the shared private redis-server
# Own database per process: other scenarios drop theirs by name, and two runs may overlap on a shared box.
DB_NAME = f"flashstock_bench_flow_{os.getpid()}"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
REPO = Path(__file__).resolve().parent.parent
SAMPLE_EVERY_S = 0.1
# The order row's insert time, stamped by PostgreSQL itself; added to the bench database only.
LAG_COLUMN = "ALTER TABLE orders ADD COLUMN bench_persisted_at double precision " \
             "DEFAULT extract(epoch from clock_timestamp())"


@dataclass
class Stack:
    """The processes and addresses of one run."""

    api: subprocess.Popen
    worker: subprocess.Popen
    beat: subprocess.Popen
    port: int
    env: dict[str, str]
    db_url: str


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
    signal_group(stack.worker, signal.SIGCONT)
    for proc in (stack.api, stack.beat, stack.worker):
        ctx.procs.stop(proc)


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send sig to the process group proc leads (a Celery worker and its pool children)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def flow_inventory(ctx: Context) -> Any:
    """The core on the run's Redis under this scenario's prefix."""
    from inventory import Inventory
    from inventory.config import Settings

    return Inventory(redis.Redis(host="127.0.0.1", port=ctx.redis_port), Settings(key_prefix=PREFIX))


def seed(ctx: Context, stock: dict[str, int], broker_url: str, queue: str, timeout_s: float = 30.0) -> None:
    """Configure the SKUs through the core once the worker has set the Redis epoch, then wait until
    the seed events are persisted (a drain is queued the way beat would)."""
    from inventory.config import Settings
    from sync.app import make_celery

    inv = flow_inventory(ctx)
    _until(lambda: inv.redis.exists(inv.keys.parts[0].epoch), timeout_s, "worker never initialised the Redis epoch")
    for sku, units in stock.items():
        inv.catalog.configure(sku, name=f"bench {sku}", price=1000)
        inv.catalog.adjust_stock(sku, set_total=units, reason="seed")
    app = make_celery(Settings(redis_url=f"redis://127.0.0.1:{ctx.redis_port}/0", key_prefix=PREFIX,
                               celery_queue=queue, celery_broker_url=broker_url))
    try:
        app.send_task("flashstock.persist_outbox", queue=queue)
    finally:
        app.close()
    _until(lambda: inv.redis.xlen(inv.keys.parts[0].outbox) == 0, timeout_s, "seed events were not persisted")


def _until(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)
# -- after the load --------------------------------------------------------------------------------


def wait_drained(inv: Any, timeout_s: float, sink: list[Sample]) -> tuple[bool, float]:
    """Poll until the outbox is empty with nothing pending three times in a row (bounded)."""
    from inventory.persistence import GROUP

    t0, empty = time.monotonic(), 0
    while time.monotonic() - t0 < timeout_s:
        info = inv.redis.xinfo_stream(inv.keys.parts[0].outbox)
        sink.append(Sample(time.time(), int(info["length"]), int(info["entries-added"])))
        pending = int(inv.redis.xpending(inv.keys.parts[0].outbox, GROUP)["pending"])
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
    length = int(inv.redis.xlen(inv.keys.parts[0].outbox))
    pending = int(inv.redis.xpending(inv.keys.parts[0].outbox, GROUP)["pending"])
    engine = make_engine(db_url, pool_size=2)
    try:
        report = run_reconciliation(inv, make_session_factory(engine), repair=False, full=True)
    finally:
        engine.dispose()
    recon = {"clean": report.clean, "skus_checked": report.skus_checked, "skus_busy": report.skus_busy,
             "skipped": report.skipped, "drifts": [f"{d.sku} {d.kind}: {d.detail}" for d in report.drifts]}
    return Snapshot(orders, persisted_at, ledger, payments, rejects, drifts, state, length, pending, recon)


def log_errors(path: Path) -> list[str]:
    """ERROR lines and tracebacks in a worker/beat log."""
    if not path.exists():
        return []
    return [line for line in path.read_text(errors="replace").splitlines()
            if "ERROR" in line or line.startswith("Traceback")]


def persist_task_stats(path: Path) -> dict:
    """How many persist_outbox tasks the worker ran and how many outbox entries each persisted."""
    done = re.findall(r"flashstock\.persist_outbox\[[^]]+\] succeeded in [0-9.e-]+s: \{'entries': (\d+)",
                      path.read_text(errors="replace")) if path.exists() else []
    entries = [int(n) for n in done]
    return {"tasks": len(entries), "entries": sum(entries), "empty_tasks": entries.count(0),
            "entries_per_task": round(sum(entries) / len(entries), 2) if entries else None}


def delete_amqp_queue(queue: str) -> None:
    """Remove this run's queue from the shared RabbitMQ."""
    from kombu import Connection

    try:
        with Connection(AMQP_URL, connect_timeout=5) as conn:
            conn.default_channel.queue_delete(queue)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the run's result
        print(f"could not delete RabbitMQ queue {queue}: {exc!r}", file=sys.stderr)
