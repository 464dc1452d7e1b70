"""What every scenario of `python -m bench` is given, and the shape of what it returns.

A scenario is a module with `run(ctx: Context) -> dict`. The dict is JSON-able and has at least
`failures` (list of strings: any entry makes the harness exit 1) and `summary` (short lines for
the console). Each scenario writes its own files as `ctx.out_dir / f"{name}*.{json,csv,png}"` and
uses its own Redis key prefix, so scenarios can share the run's private redis-server.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from bench.procs import ProcessGroup


@dataclass(frozen=True)
class Context:
    """One harness run's services and knobs."""

    procs: ProcessGroup  # start helpers with procs.start(...); stopped by pid at the end
    redis_port: int  # the run's private redis-server on 127.0.0.1
    redis_pid: int
    pg_base_dsn: str  # e.g. "host=127.0.0.1 port=5432 user=postgres" (no dbname)
    pg_admin_db: str  # database to connect to for CREATE/DROP DATABASE
    smoke: bool  # seconds and small numbers (runs inside the test command)
    out_dir: Path  # where result files go
    tmp: Path  # logs and scratch for this run (git-ignored)
    args: argparse.Namespace  # the full CLI (workers, worker_connections, ...)
