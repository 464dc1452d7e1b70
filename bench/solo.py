"""Run one scenario module on its own: a private redis-server, a Context, the result, the exit code."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import redis

from bench.procs import ProcessGroup, install_signal_handlers
from bench.services import start_redis
from bench.suite import Context

BENCH = Path(__file__).resolve().parent

Scenario = Callable[[Context], dict]


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every standalone scenario takes; add scenario knobs on the returned parser."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="seconds and small numbers")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="default bench/results (smoke: bench/results/tmp/smoke)")
    p.add_argument("--pg-dsn", default="host=127.0.0.1 port=5432 user=postgres", help="without dbname")
    p.add_argument("--pg-admin-db", default="test", help="database to connect to for CREATE/DROP DATABASE")
    return p


def main(name: str, scenario: Scenario, args: argparse.Namespace) -> int:
    """Start a private redis-server, run the scenario, stop what was started (by pid); 1 on any failure."""
    install_signal_handlers()
    out_dir = args.out_dir or (BENCH / "results" / "tmp" / "smoke" if args.smoke else BENCH / "results")
    tmp = BENCH / "results" / "tmp" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    with ProcessGroup(tmp) as procs:
        server = start_redis(procs)
        ctx = Context(procs=procs, redis_port=server.port, redis_pid=server.pid, pg_base_dsn=args.pg_dsn,
                      pg_admin_db=args.pg_admin_db, smoke=args.smoke, out_dir=out_dir, tmp=tmp, args=args)
        result = scenario(ctx)
    for line in result.get("summary", []):
        print(line)
    for failure in result.get("failures", []):
        print(f"FAILURE: {failure}", file=sys.stderr)
    print(f"results: {out_dir / name}.json")
    return 1 if result.get("failures") else 0


def write_json(ctx: Context, name: str, result: dict) -> Path:
    """Write the scenario's result as ctx.out_dir/<name>.json."""
    path = ctx.out_dir / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Unlink every key under prefix (only the keys this scenario created)."""
    batch: list = []
    for key in client.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)
