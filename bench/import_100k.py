"""Time a catalogue import of N SKUs (default 100,000) on real Redis and PostgreSQL, phase by phase.

    .venv/bin/python bench/import_100k.py [--skus 100000] [--batch-size 500]

Runs the same functions as `flashstock catalog import` (parse, diff, pipelined apply, outbox drain into
Postgres), first as a fresh seed and then as a reseed that changes every stock and price. Uses its own key
prefix and Postgres schema and removes both afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import redis
import sqlalchemy as sa

from inventory import Inventory, Settings
from inventory.db import make_engine, make_session_factory
from inventory.importer import apply_plan, plan_import, read_file
from inventory.migrations import upgrade
from inventory.persistence import persist_now

REDIS_URL = "redis://127.0.0.1:6379/0"
DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def write_catalog(path: Path, skus: int, price: int, stock: int) -> None:
    with path.open("w") as out:
        out.write("sku,name,price,currency,stock,per_user_limit,sale_starts_at,sale_ends_at\n")
        for n in range(skus):
            out.write(f"BENCH-{n:06d},Product {n},{price + n % 100},USD,{stock + n % 7},2,"
                      "2031-01-01T10:00:00Z,2031-01-01T12:00:00Z\n")


def run(inv: Inventory, sessions, path: Path, batch_size: int) -> dict[str, float]:  # noqa: ANN001
    timings, started = {}, time.perf_counter()
    rows = read_file(path, inv.ctx.now_ms())
    timings["parse+validate"] = time.perf_counter() - started
    mark = time.perf_counter()
    plan = plan_import(inv, rows)
    timings["diff vs live"] = time.perf_counter() - mark
    mark = time.perf_counter()
    result = apply_plan(inv, plan, batch_size=batch_size)
    timings["apply to Redis"] = time.perf_counter() - mark
    assert not result.failed, result.failed[:3]
    mark = time.perf_counter()
    drained = persist_now(inv, sessions)
    timings["drain to Postgres"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    timings["outbox entries"] = drained.entries
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    prefix, schema = f"fsbench:{uuid.uuid4().hex[:8]}", f"fsbench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(DATABASE_URL, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{DATABASE_URL}?options=-csearch_path%3D{schema}"
    client = redis.Redis.from_url(REDIS_URL)
    engine = make_engine(url, pool_size=2)
    try:
        upgrade(url)
        inv = Inventory(client, Settings(redis_url=REDIS_URL, key_prefix=prefix, database_url=url))
        sessions = make_session_factory(engine)
        with tempfile.TemporaryDirectory() as tmp:
            seed, reseed = Path(tmp) / "seed.csv", Path(tmp) / "reseed.csv"
            write_catalog(seed, args.skus, price=1000, stock=100)
            write_catalog(reseed, args.skus, price=1200, stock=150)
            for name, path in (("seed (all new)", seed), ("reseed (all changed)", reseed)):
                timings = run(inv, sessions, path, args.batch_size)
                print(f"{name}: {args.skus} SKUs")
                for phase, value in timings.items():
                    print(f"  {phase:<18} {value:8.2f}{'' if phase == 'outbox entries' else ' s'}")
                print(f"  {'SKUs per second':<18} {args.skus / timings['total']:8.0f}")
    finally:
        engine.dispose()
        for batch in _batches(client.scan_iter(match=f"{prefix}:*", count=5000), 5000):
            client.unlink(*batch)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _batches(items, size):  # noqa: ANN001, ANN202
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


if __name__ == "__main__":
    main()
