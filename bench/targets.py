"""Benchmark targets: how to start each WSGI app, seed its stock and read it back.

Adding the flashstock API later is one more `Target(...)` in `all_targets`: a command
(e.g. gunicorn_argv(env, port, "wsgi:app") or `-c gunicorn.conf.py`), a seed function and a
stock-read function (and optionally a server-side count of holds).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import psycopg2
import redis

EMPTY_GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")


@dataclass(frozen=True)
class Env:
    """What targets need to know about this run's services and server settings."""

    redis_port: int
    pg_dsn: Optional[str]
    workers: int = 2
    worker_connections: int = 1000
    redis_client: str = "tuned"
    redis_pool: int = 1000
    pg_pool: int = 12
    key_prefix: str = "bench:"


@dataclass(frozen=True)
class Target:
    """A WSGI app under test."""

    name: str
    command: Callable[[Env, int], list[str]]  # argv that serves HTTP on 127.0.0.1:<port>
    seed: Callable[[Env, str, int], None]  # (env, sku, units): reset stock and holds
    read_stock: Callable[[Env, str], int]  # (env, sku) -> units still available
    count_holds: Optional[Callable[[Env, str], int]] = None  # units held, from the server's own records
    needs_postgres: bool = False


def gunicorn_argv(env: Env, port: int, app_spec: str) -> list[str]:
    """gunicorn with the real stack's serving settings (api/serving.py): gevent, keep-alive 5 s."""
    return [
        sys.executable, "-m", "gunicorn", "-c", str(EMPTY_GUNICORN_CONF), "-k", "gevent", "-w", str(env.workers),
        "--worker-connections", str(env.worker_connections), "--keep-alive", "5", "--timeout", "30",
        "--graceful-timeout", "5", "--backlog", "2048", "--log-level", "warning",
        "--no-control-socket", "-b", f"127.0.0.1:{port}", app_spec,
    ]


# --- PostgreSQL baselines -------------------------------------------------------------------


def _pg(env: Env) -> "psycopg2.extensions.connection":
    if env.pg_dsn is None:
        raise RuntimeError("this target needs PostgreSQL")
    return psycopg2.connect(env.pg_dsn)


def pg_seed(env: Env, sku: str, units: int) -> None:
    """Fresh stock row (no dead tuples from the previous run) and no holds."""
    conn = _pg(env)
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE stock, reservations RESTART IDENTITY")
        cur.execute("INSERT INTO stock (sku, available, version) VALUES (%s, %s, 0)", (sku, units))
    with conn.cursor() as cur:
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE stock")
        cur.execute("VACUUM ANALYZE reservations")
    conn.close()


def pg_read_stock(env: Env, sku: str) -> int:
    """Units available in the stock row."""
    conn = _pg(env)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT available FROM stock WHERE sku = %s", (sku,))
        n = cur.fetchone()[0]
    conn.close()
    return n


def pg_count_holds(env: Env, sku: str) -> int:
    """Units in reservation rows."""
    conn = _pg(env)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(sum(qty), 0) FROM reservations WHERE sku = %s", (sku,))
        n = int(cur.fetchone()[0])
    conn.close()
    return n


def pg_target(name: str, module: str) -> Target:
    """A bench/baselines/<module>.py app."""

    def command(env: Env, port: int) -> list[str]:
        spec = f"bench.baselines.{module}:create_app(dsn={env.pg_dsn!r}, pool_size={env.pg_pool})"
        return gunicorn_argv(env, port, spec)

    return Target(name, command, pg_seed, pg_read_stock, pg_count_holds, needs_postgres=True)


# --- Redis ceiling ----------------------------------------------------------------------------


def _redis(env: Env) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=env.redis_port, decode_responses=True)


def redis_seed(env: Env, sku: str, units: int) -> None:
    """Set the ceiling's stock counter."""
    with _redis(env) as r:
        r.set(f"{env.key_prefix}stock:{sku}", units)


def redis_read_stock(env: Env, sku: str) -> int:
    """Read the ceiling's stock counter."""
    with _redis(env) as r:
        return int(r.get(f"{env.key_prefix}stock:{sku}") or 0)


def ceiling_target(name: str = "ceiling", client: Optional[str] = None) -> Target:
    """Bare WSGI + one reserve EVALSHA (bench/ceiling/app.py); client overrides env.redis_client."""

    def command(env: Env, port: int) -> list[str]:
        spec = (
            f"bench.ceiling.app:create_app(redis_port={env.redis_port}, key_prefix={env.key_prefix!r}, "
            f"client={client or env.redis_client!r}, max_connections={env.redis_pool})"
        )
        return gunicorn_argv(env, port, spec)

    return Target(name, command, redis_seed, redis_read_stock)


def all_targets() -> dict[str, Target]:
    """Every known target by name."""
    return {
        t.name: t
        for t in (
            ceiling_target(),
            # redis-py construction variants of the ceiling (see NOTES.md, redis-py under gevent)
            ceiling_target("ceiling_default_client", "default"),
            ceiling_target("ceiling_lean_client", "lean"),
            pg_target("pg_for_update", "for_update"),
            pg_target("pg_conditional", "conditional"),
            pg_target("pg_optimistic", "optimistic"),
        )
    }
