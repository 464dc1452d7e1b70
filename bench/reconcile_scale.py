"""Reconciliation scaling: 100 changed SKUs in a large catalogue vs in a 1,000-SKU one.

    .venv/bin/python -m bench.reconcile_scale [--smoke] [--large 1000000] [--repeats 9] [--keep-db]

Target (issue 6): reconciliation time grows with SKUs changed, not catalogue size: 100 changed SKUs
in a 1,000,000-SKU catalogue take <= 2x the time of 100 changed in a 1,000-SKU one (smoke: 20,000).

Each catalogue gets its own key prefix in Redis and its own migrated database (Alembic, via
inventory.migrations.upgrade). SKU 0 is created through the core (Catalog.configure + adjust_stock)
and persisted by the real outbox drain; every other SKU is a bulk copy of what that wrote: stock
hashes and catalogue entries pipelined into Redis, product and ledger rows COPYed into PostgreSQL,
then VACUUM ANALYZE. Build time is measured and reported apart. Each round then changes 100 SKUs
spread over the catalogue (a fresh set per round) through the core: a restock (+1), a reservation
checked out and one left open; drains the outbox into PostgreSQL; and times
run_reconciliation(repair=True), the call the Celery beat task makes. Rounds alternate between the
two catalogues; the first round of each is a warm-up, the median of the rest is compared.
Every timed run must check exactly the 100 changed SKUs and find no drift.
"""

from __future__ import annotations

import io
import logging
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import redis
from psycopg2 import sql
from psycopg2.extensions import parse_dsn
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from bench.cpu import CpuWindow
from bench.goals import at_most, verdict
from bench.services import admin_conn, pg_dsn
from bench.solo import delete_prefix, main, parser, write_json
from bench.suite import Context
from inventory import Inventory, Settings
from inventory.context import decode_hash
from inventory.db import make_engine, make_session_factory
from inventory.migrations import upgrade
from inventory.persistence import persist_now
from inventory.reconcile import check_sku, run_reconciliation
from inventory.tables import LedgerRow, ProductRow

NAME = "reconcile_scale"
CHANGED = 100
MAX_RATIO = 2.0
STOCK = 1000
_PRODUCT_COLS = ("sku", "name", "price", "currency", "per_user_limit", "starts_at_ms", "ends_at_ms", "paused",
                 "version", "updated_ms")
_LEDGER_COLS = ("ref", "sku", "kind", "total_delta", "sold_delta", "order_id", "version", "created_ms")


@dataclass(frozen=True)
class Sizes:
    """Catalogue sizes and rounds."""

    small: int
    large: int
    repeats: int  # timed rounds per catalogue, after one warm-up round


def sizes(smoke: bool, large: int | None = None, repeats: int | None = None) -> Sizes:
    """Smoke: 1,000 vs 20,000, 3 rounds; full: 1,000 vs 1,000,000, 9 rounds (a round is ~20 ms of reconciling)."""
    base = Sizes(1_000, 20_000, 3) if smoke else Sizes(1_000, 1_000_000, 9)
    return Sizes(base.small, large or base.large, repeats or base.repeats)


# -- pure logic (tested in tests/bench) -------------------------------------------------------------


def sku_name(i: int) -> str:
    """SKU number i of a bench catalogue."""
    return f"R{i:07d}"


def changed_indices(catalogue: int, round_no: int, count: int = CHANGED) -> list[int]:
    """count SKU numbers spread evenly over the catalogue, a different set for each round."""
    stride = catalogue // count
    if stride < 2:
        raise ValueError("catalogue too small for distinct sets per round")
    return [k * stride + 1 + round_no % (stride - 1) for k in range(count)]


def scaling(small_s: list[float], large_s: list[float], limit: float = MAX_RATIO) -> dict:
    """Medians and the large/small ratio against the target."""
    small, large = statistics.median(small_s), statistics.median(large_s)
    ratio = large / small if small > 0 else None
    return {"small_median_s": round(small, 4), "large_median_s": round(large, 4),
            "ratio": round(ratio, 3) if ratio is not None else None, "target": at_most(ratio, limit, "x")}


def copy_text(rows: list[tuple[Any, ...]]) -> str:
    """Rows in PostgreSQL COPY text format (tab separated, \\N for NULL, t/f booleans)."""
    def cell(v: Any) -> str:
        if v is None:
            return "\\N"
        if isinstance(v, bool):
            return "t" if v else "f"
        return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    return "".join("\t".join(cell(v) for v in row) + "\n" for row in rows)


# -- building a catalogue -------------------------------------------------------------------------


@dataclass
class Catalogue:
    """One catalogue: its Redis prefix, its database and the core wired to both."""

    label: str
    skus: int
    db: str
    url: str
    inv: Inventory
    engine: Engine
    sessions: sessionmaker[Session]
    build_s: dict[str, float] = field(default_factory=dict)


def sqlalchemy_url(base_dsn: str, dbname: str) -> str:
    """A psycopg2 SQLAlchemy URL for a libpq base DSN pointed at dbname."""
    p = parse_dsn(base_dsn)
    return URL.create("postgresql+psycopg2", username=p.get("user"), password=p.get("password"),
                      host=p.get("host"), port=int(p["port"]) if "port" in p else None,
                      database=dbname).render_as_string(hide_password=False)


def create_db(ctx: Context, db: str) -> None:
    """(Re)create one of our databases (flashstock_bench_*)."""
    assert db.startswith("flashstock_bench")
    with admin_conn(ctx.pg_base_dsn, ctx.pg_admin_db) as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))


def drop_db(ctx: Context, db: str) -> None:
    """Drop one of our databases."""
    assert db.startswith("flashstock_bench")
    with admin_conn(ctx.pg_base_dsn, ctx.pg_admin_db) as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


def build(ctx: Context, label: str, n: int) -> Catalogue:
    """A catalogue of n SKUs in Redis and PostgreSQL that agree exactly, SKU 0 written by the core."""
    db = f"flashstock_bench_rec_{label}"
    t0 = time.perf_counter()
    create_db(ctx, db)
    url = sqlalchemy_url(ctx.pg_base_dsn, db)
    upgrade(url)
    engine = make_engine(url, pool_size=2)
    inv = Inventory(redis.Redis(host="127.0.0.1", port=ctx.redis_port), Settings(key_prefix=f"fsrec{label}"))
    cat = Catalogue(label, n, db, url, inv, engine, make_session_factory(engine))
    ref = sku_name(0)
    inv.catalog.configure(ref, name=f"Product {ref}", price=1999, currency="USD", per_user_limit=2)
    inv.catalog.adjust_stock(ref, set_total=STOCK, reason="seed")
    persist_now(inv, cat.sessions)
    cat.build_s["schema+core_sku"] = time.perf_counter() - t0
    mark = time.perf_counter()
    _bulk_redis(inv, n, decode_hash(inv.redis.hgetall(inv.keys.sku(ref).stock)))
    inv.redis.delete(inv.keys.parts[0].dirty)  # as the reconciliation after a seed leaves it
    cat.build_s["redis"] = time.perf_counter() - mark
    mark = time.perf_counter()
    _bulk_postgres(ctx, cat)
    cat.build_s["postgres_copy"] = time.perf_counter() - mark
    mark = time.perf_counter()
    conn = psycopg2.connect(pg_dsn(ctx.pg_base_dsn, db))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE products, stock_ledger")
    conn.close()
    cat.build_s["vacuum_analyze"] = time.perf_counter() - mark
    cat.build_s = {k: round(v, 2) for k, v in cat.build_s.items()} | {"total": round(time.perf_counter() - t0, 2)}
    return cat


def _bulk_redis(inv: Inventory, n: int, template: dict[str, str], batch: int = 5000) -> None:
    for start in range(1, n, batch):
        chunk = [sku_name(i) for i in range(start, min(n, start + batch))]
        pipe = inv.redis.pipeline(transaction=False)
        for sku in chunk:
            fields: dict[Any, Any] = {**template, "name": f"Product {sku}"}
            pipe.hset(inv.keys.sku(sku).stock, mapping=fields)
        pipe.zadd(inv.keys.parts[0].catalog, dict.fromkeys(chunk, 0))
        pipe.execute()


def _bulk_postgres(ctx: Context, cat: Catalogue, batch: int = 200_000) -> None:
    ref = sku_name(0)
    with cat.sessions() as session:
        product = session.scalars(select(ProductRow).where(ProductRow.sku == ref)).one()
        ledger = session.scalars(select(LedgerRow).where(LedgerRow.sku == ref)).one()
    conn = psycopg2.connect(pg_dsn(ctx.pg_base_dsn, cat.db))
    try:
        with conn, conn.cursor() as cur:
            for start in range(1, cat.skus, batch):
                skus = [sku_name(i) for i in range(start, min(cat.skus, start + batch))]
                products = [tuple(f"Product {s}" if c == "name" else s if c == "sku" else getattr(product, c)
                                  for c in _PRODUCT_COLS) for s in skus]
                rows = [(f"adj:bulk-{s}:{s}", s, ledger.kind, ledger.total_delta, ledger.sold_delta,
                         ledger.order_id, ledger.version, ledger.created_ms) for s in skus]
                for table, cols, data in (("products", _PRODUCT_COLS, products), ("stock_ledger", _LEDGER_COLS, rows)):
                    cur.copy_expert(f"COPY {table} ({', '.join(cols)}) FROM STDIN", io.StringIO(copy_text(data)))
    finally:
        conn.close()


def validate(cat: Catalogue, sample: int = 50, full_up_to: int = 50_000) -> list[str]:
    """Bulk rows must look exactly like the core's: no drift on a spread sample (every SKU if small)."""
    step = max(1, cat.skus // sample)
    drifts = [check_sku(cat.inv, cat.sessions, sku_name(i), repair=False) for i in range(0, cat.skus, step)]
    bad: list[Any] = [d for d in drifts if d is not None]
    if cat.skus <= full_up_to:
        report = run_reconciliation(cat.inv, cat.sessions, repair=False, full=True)
        if report.skus_checked != cat.skus:
            bad.append(f"full run checked {report.skus_checked} of {cat.skus}")
        bad += list(report.drifts)
    return [f"{cat.label}: bulk catalogue drifts before any change: {bad[:3]}"] if bad else []


# -- timed rounds ---------------------------------------------------------------------------------


def change(cat: Catalogue, round_no: int) -> list[str]:
    """Change 100 SKUs through the core (restock, checked-out and open reservations), then drain the outbox."""
    skus = [sku_name(i) for i in changed_indices(cat.skus, round_no)]
    for sku in skus:
        cat.inv.catalog.adjust_stock(sku, add=1, reason="restock")
        bought = cat.inv.reservations.reserve(f"buyer-{round_no}-{sku}", {sku: 1})
        cat.inv.reservations.checkout(bought.id)
        cat.inv.reservations.reserve(f"holder-{round_no}-{sku}", {sku: 1})
    persist_now(cat.inv, cat.sessions)
    return skus


def timed_round(cat: Catalogue, round_no: int) -> tuple[float, list[str]]:
    """Change, drain, then time one reconciliation; it must check exactly the changed SKUs, cleanly."""
    skus = change(cat, round_no)
    t0 = time.perf_counter()
    report = run_reconciliation(cat.inv, cat.sessions, repair=True)
    elapsed = time.perf_counter() - t0
    problems = []
    if report.skipped or report.skus_checked != len(skus) or report.drifts:
        problems.append(f"{cat.label} round {round_no}: checked {report.skus_checked} of {len(skus)}, "
                        f"drifts {report.drifts[:2]}, skipped {report.skipped!r}")
    if cat.inv.redis.scard(cat.inv.keys.parts[0].dirty):
        problems.append(f"{cat.label} round {round_no}: dirty set not empty after a clean run")
    return elapsed, problems


def run(ctx: Context) -> dict:
    """Scenario entry point (bench/suite.py contract)."""
    size = sizes(ctx.smoke, getattr(ctx.args, "large", None), getattr(ctx.args, "repeats", None))
    logging.getLogger("inventory").setLevel(logging.WARNING)
    catalogues: list[Catalogue] = []
    failures: list[str] = []
    samples: dict[str, list[float]] = {"small": [], "large": []}
    warmup: dict[str, float] = {}
    try:
        for label, n in (("small", size.small), ("large", size.large)):
            catalogues.append(build(ctx, label, n))
            failures += validate(catalogues[-1])
        window = CpuWindow({"redis": ctx.redis_pid}, include_postgres=True)
        window.start()
        t0, cpu0 = time.monotonic(), time.process_time()
        for round_no in range(size.repeats + 1):
            order = catalogues if round_no % 2 == 0 else catalogues[::-1]
            for cat in order:
                elapsed, problems = timed_round(cat, round_no)
                failures += problems
                if round_no == 0:
                    warmup[cat.label] = round(elapsed, 4)
                else:
                    samples[cat.label].append(round(elapsed, 4))
        cpu = window.stop(time.monotonic() - t0, time.process_time() - cpu0)
        used = {c.label: int(c.inv.redis.info("memory")["used_memory"]) for c in catalogues[-1:]}
    finally:
        for cat in catalogues:
            cat.engine.dispose()
            delete_prefix(cat.inv.redis, cat.inv.settings.key_prefix)
            if not getattr(ctx.args, "keep_db", False):
                drop_db(ctx, cat.db)
    result = {
        "scenario": NAME, "smoke": ctx.smoke, "sizes": size.__dict__, "changed_per_round": CHANGED,
        "versions": {"python": platform.python_version(), "redis_py": redis.__version__},
        "build_s": {c.label: c.build_s for c in catalogues}, "redis_used_memory_b": used,
        "warmup_s": warmup, "samples_s": samples, **scaling(samples["small"], samples["large"]),
        "cpu": cpu, "failures": failures,
    }
    result["summary"] = summary(result)
    write_json(ctx, NAME, result)
    return result


def summary(result: dict) -> list[str]:
    """Console lines."""
    s, build = result["sizes"], result["build_s"]
    ms = {k: f"median {result[f'{k}_median_s'] * 1000:.1f} ms {result['samples_s'][k]}" for k in ("small", "large")}
    other = result["cpu"]["other_share_of_capacity"] or 0
    return [
        (f"build: {s['small']:,} SKUs {build['small']['total']} s, {s['large']:,} SKUs {build['large']['total']} s"
         f" ({build['large']})"),
        f"reconcile 100 changed: {s['small']:,}-SKU catalogue {ms['small']}, {s['large']:,}-SKU {ms['large']}",
        f"target large/small <= {MAX_RATIO}x: {verdict(result['target'])} (other tenants {other:.0%} of the machine)",
    ]


if __name__ == "__main__":
    p = parser("python -m bench.reconcile_scale", __doc__ or "")
    p.add_argument("--large", type=int, default=None, help="large catalogue size (default 1,000,000; smoke 20,000)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per catalogue (default 9; smoke 3)")
    p.add_argument("--keep-db", action="store_true", help="keep the flashstock_bench_rec_* databases")
    raise SystemExit(main(NAME, run, p.parse_args()))
