"""Backing services for a run: a private redis-server and a private PostgreSQL database."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql

from bench.baselines.common import SCHEMA
from bench.procs import ProcessGroup, free_port, wait_for_port

BENCH_DB = "flashstock_bench"
BENCH_API_DB = "flashstock_bench_api"  # flashstock's own schema (migrations), apart from the baselines'


@dataclass(frozen=True)
class RedisServer:
    """A redis-server this run started (so nobody else's FLUSHALL or SCRIPT FLUSH hits it)."""

    port: int
    pid: int


def start_redis(procs: ProcessGroup) -> RedisServer:
    """Start redis-server on a free loopback port, no persistence."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not found")
    port = free_port()
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--protected-mode", "no", "--maxclients", "10000"]
    proc = procs.start(f"redis-{port}", argv)
    wait_for_port(port, 10, proc)
    return RedisServer(port=port, pid=proc.pid)


def pg_dsn(base: str, dbname: str) -> str:
    """The base DSN pointed at another database."""
    return f"{base} dbname={dbname}"


def create_bench_db(base_dsn: str, admin_db: str) -> str:
    """(Re)create the bench database with the baseline schema; return its DSN."""
    drop_bench_db(base_dsn, admin_db)
    admin = psycopg2.connect(pg_dsn(base_dsn, admin_db))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    admin.close()
    with admin_conn(base_dsn, admin_db) as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_API_DB)))
    dsn = pg_dsn(base_dsn, BENCH_DB)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(SCHEMA)
    conn.close()
    return dsn


def drop_bench_db(base_dsn: str, admin_db: str) -> None:
    """Drop the bench database (only ours, by its fixed name)."""
    admin = psycopg2.connect(pg_dsn(base_dsn, admin_db))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB)))
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_API_DB)))
    admin.close()


class admin_conn:
    """Autocommit cursor on the admin database (CREATE/DROP DATABASE)."""

    def __init__(self, base_dsn: str, admin_db: str) -> None:
        self.conn = psycopg2.connect(pg_dsn(base_dsn, admin_db))
        self.conn.autocommit = True

    def __enter__(self):  # noqa: ANN204
        return self.conn.cursor()

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
