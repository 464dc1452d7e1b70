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

from api.serving import WORKER_CLASS

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
    cluster_url: Optional[str] = None  # redis+cluster://... of the run's private cluster, if one runs
    cluster_ports: tuple[int, ...] = ()  # its masters


@dataclass(frozen=True)
class Target:
    """A WSGI app under test."""

    name: str
    command: Callable[[Env, int], list[str]]  # argv that serves HTTP on 127.0.0.1:<port>
    seed: Callable[[Env, str, int], None]  # (env, sku, units): reset stock and holds
    read_stock: Callable[[Env, str], int]  # (env, sku) -> units still available
    count_holds: Optional[Callable[[Env, str], int]] = None  # units held, from the server's own records
    needs_postgres: bool = False
    env_vars: Optional[Callable[[Env], dict[str, str]]] = None  # extra environment for the server
    cluster: bool = False  # serves from the run's private Redis Cluster instead of the single node


def gunicorn_argv(env: Env, port: int, app_spec: str, worker_class: str = WORKER_CLASS) -> list[str]:
    """gunicorn with the real stack's serving settings (api/serving.py): its gevent pywsgi worker,
    keep-alive 5 s; worker_class="gevent" is gunicorn's plain gevent worker, which they used before."""
    return [
        sys.executable, "-m", "gunicorn", "-c", str(EMPTY_GUNICORN_CONF), "-k", worker_class, "-w", str(env.workers),
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


def pg_target(name: str, module: str, worker_class: str = WORKER_CLASS) -> Target:
    """A bench/baselines/<module>.py app (worker_class as in gunicorn_argv)."""

    def command(env: Env, port: int) -> list[str]:
        spec = f"bench.baselines.{module}:create_app(dsn={env.pg_dsn!r}, pool_size={env.pg_pool})"
        return gunicorn_argv(env, port, spec, worker_class)

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


def ceiling_target(name: str = "ceiling", client: Optional[str] = None, remember_sold_out: float = 0.0,
                   worker_class: str = WORKER_CLASS) -> Target:
    """Bare WSGI + flashstock's own reserve Lua call (bench/ceiling/app.py), same keys and stock as
    the flashstock target; client overrides env.redis_client; remember_sold_out answers a refused SKU
    from memory for that many seconds (the bound of any sold-out cache on this stack); worker_class
    as in gunicorn_argv."""

    def command(env: Env, port: int) -> list[str]:
        spec = (
            f"bench.ceiling.app:create_app(redis_port={env.redis_port}, key_prefix={FS_KEY_PREFIX!r}, "
            f"client={client or env.redis_client!r}, max_connections={env.redis_pool}, "
            f"remember_sold_out={remember_sold_out!r})"
        )
        return gunicorn_argv(env, port, spec, worker_class)

    return Target(name, command, fs_seed, fs_read_stock, fs_count_holds)


# --- flashstock API ----------------------------------------------------------------------------

FS_KEY_PREFIX = "fsbench"  # KeySpace prefix (no braces/spaces) shared by flashstock and the ceiling
BENCH_API_KEY = "bench-storefront-key"  # sent by bench/wrk/reserve.lua as X-API-Key to every target


def _inventory(env: Env, cluster: bool = False) -> tuple["redis.Redis | redis.RedisCluster", "object"]:
    """A core Inventory on the single node or (cluster) on the run's cluster, as the API builds it."""
    from inventory import Inventory
    from inventory.config import Settings
    from inventory.store import connect_redis

    if cluster:
        settings = Settings(key_prefix=FS_KEY_PREFIX, redis_url=_cluster_url(env))
        r = connect_redis(settings)
        return r, Inventory(r, settings)
    r = redis.Redis(host="127.0.0.1", port=env.redis_port)
    return r, Inventory(r, Settings(key_prefix=FS_KEY_PREFIX))


def _cluster_url(env: Env) -> str:
    if not env.cluster_url:
        raise RuntimeError("this target needs the run's Redis Cluster")
    return env.cluster_url


def wipe_bench_prefix(r: redis.Redis) -> None:
    """Unlink every key under the bench prefix (products, holds, records, limits), in batches."""
    batch: list[bytes] = []
    for key in r.scan_iter(match=f"{FS_KEY_PREFIX}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            r.unlink(*batch)
            batch = []
    if batch:
        r.unlink(*batch)


def _seed(env: Env, sku: str, units: int, cluster: bool, buckets: int = 1) -> None:
    r, inv = _inventory(env, cluster)
    with r:
        if cluster:
            from bench.cluster import wipe_prefix

            wipe_prefix(env.cluster_ports, FS_KEY_PREFIX)
        else:
            wipe_bench_prefix(r)
        inv.catalog.configure(sku, name=f"bench {sku}", price=1000)
        inv.catalog.adjust_stock(sku, set_total=units)
        if buckets > 1:
            inv.buckets.split(sku, buckets)  # inventory/buckets.py: the units spread over the shards


def _stock(env: Env, sku: str, cluster: bool) -> "object":
    r, inv = _inventory(env, cluster)
    with r:
        return inv.catalog.get(sku).stock


def fs_seed(env: Env, sku: str, units: int) -> None:
    """Wipe every key under the bench prefix, then configure the SKU."""
    _seed(env, sku, units, cluster=False)


def fs_read_stock(env: Env, sku: str) -> int:
    """Available units per the SKU's stock hash."""
    return _stock(env, sku, cluster=False).available


def fs_count_holds(env: Env, sku: str) -> int:
    """Units held (+ sold) per the SKU's stock hash: must equal the 201s."""
    st = _stock(env, sku, cluster=False)
    return st.held + st.sold


def fs_cluster_seed(env: Env, sku: str, units: int) -> None:
    """fs_seed on the run's cluster (every master wiped)."""
    _seed(env, sku, units, cluster=True)


def fs_cluster_read_stock(env: Env, sku: str) -> int:
    """fs_read_stock on the run's cluster."""
    return _stock(env, sku, cluster=True).available


def fs_cluster_count_holds(env: Env, sku: str) -> int:
    """fs_count_holds on the run's cluster."""
    st = _stock(env, sku, cluster=True)
    return st.held + st.sold


def fs_env(env: Env) -> dict[str, str]:
    """flashstock settings for the bench: private Redis, bench database, limits out of the way."""
    return {
        "REDIS_URL": f"redis://127.0.0.1:{env.redis_port}/0",
        "DATABASE_URL": _api_db_url(env),
        "KEY_PREFIX": FS_KEY_PREFIX,
        "STOREFRONT_API_KEYS": BENCH_API_KEY,
        "ADMIN_API_KEYS": "bench-admin-key",
        "RATE_LIMIT_RESERVATIONS": "1000/second",  # per user; every attempt is a distinct user
        "RATE_LIMIT_RESERVATIONS_PER_IP": "1000000/second",  # all load comes from 127.0.0.1
        "REDIS_MAX_CONNECTIONS": str(env.worker_connections),  # also its gunicorn worker_connections
        "WEB_CONCURRENCY": str(env.workers),
        "LOG_LEVEL": "INFO",  # the product's one JSON line per request is part of what is measured
    }


def fs_cluster_env(env: Env) -> dict[str, str]:
    """fs_env with REDIS_URL naming the run's cluster (16 partitions, the automatic count); Celery's
    broker, which a cluster deployment must name, is the single node (reserve never enqueues)."""
    return fs_env(env) | {"REDIS_URL": _cluster_url(env),
                          "CELERY_BROKER_URL": f"redis://127.0.0.1:{env.redis_port}/1"}


def _sqlalchemy_url(dsn: str) -> str:
    """libpq key=value DSN -> postgresql+psycopg2:// URL."""
    kv = dict(part.split("=", 1) for part in dsn.split())
    auth = kv.get("user", "postgres") + (f":{kv['password']}" if "password" in kv else "")
    return (f"postgresql+psycopg2://{auth}@{kv.get('host', '127.0.0.1')}:{kv.get('port', '5432')}"
            f"/{kv.get('dbname', 'flashstock_bench')}")


def _api_db_url(env: Env) -> str:
    from bench.services import BENCH_API_DB

    return _sqlalchemy_url(env.pg_dsn or "").rsplit("/", 1)[0] + f"/{BENCH_API_DB}"


def flashstock_command(env: Env, port: int) -> list[str]:
    """The product as deployed: gunicorn.conf.py + wsgi:app (gevent, 2 workers); bind overridden."""
    from inventory.migrations import upgrade

    upgrade(_api_db_url(env))  # idempotent; the API expects the schema in place
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
            "--backlog", "2048", "wsgi:app"]


def flashstock_target() -> Target:
    return Target("flashstock", flashstock_command, fs_seed, fs_read_stock, fs_count_holds,
                  needs_postgres=True, env_vars=fs_env)


def flashstock_plain_worker_target() -> Target:
    """The product on gunicorn's plain gevent worker (its own parser, one accept per loop turn), which
    it used before api/worker.py's pywsgi worker: the A/B of that worker in one run."""
    def command(env: Env, port: int) -> list[str]:
        return [*flashstock_command(env, port)[:-1], "-k", "gevent", "wsgi:app"]

    return Target("flashstock_plain_worker", command, fs_seed, fs_read_stock, fs_count_holds,
                  needs_postgres=True, env_vars=fs_env)


def flashstock_cluster_target() -> Target:
    """The same product, same settings, with REDIS_URL=redis+cluster://... (the run's 3 masters)."""
    return Target("flashstock_cluster", flashstock_command, fs_cluster_seed, fs_cluster_read_stock,
                  fs_cluster_count_holds, needs_postgres=True, env_vars=fs_cluster_env, cluster=True)


def flashstock_cluster_buckets_target(buckets: int) -> Target:
    """flashstock_cluster with the hot SKU split into stock buckets (inventory/buckets.py) at seed time."""
    def seed(env: Env, sku: str, units: int) -> None:
        _seed(env, sku, units, cluster=True, buckets=buckets)

    return Target(f"flashstock_cluster_b{buckets}", flashstock_command, seed, fs_cluster_read_stock,
                  fs_cluster_count_holds, needs_postgres=True, env_vars=fs_cluster_env, cluster=True)


def all_targets() -> dict[str, Target]:
    """Every known target by name."""
    return {
        t.name: t
        for t in (
            flashstock_target(),
            flashstock_plain_worker_target(),
            flashstock_cluster_target(),
            flashstock_cluster_buckets_target(3),
            flashstock_cluster_buckets_target(6),
            ceiling_target(),
            # redis-py construction variants of the ceiling (see NOTES.md, redis-py under gevent)
            ceiling_target("ceiling_default_client", "default"),
            ceiling_target("ceiling_lean_client", "lean"),
            # the ceiling plus a per-process sold-out set: what any sold-out cache can reach here
            ceiling_target("ceiling_cached", remember_sold_out=0.2),
            # the baselines on gunicorn's plain gevent worker, as measured before the pywsgi worker
            ceiling_target("ceiling_plain_worker", worker_class="gevent"),
            pg_target("pg_for_update_plain_worker", "for_update", worker_class="gevent"),
            pg_target("pg_for_update", "for_update"),
            pg_target("pg_conditional", "conditional"),
            pg_target("pg_optimistic", "optimistic"),
        )
    }
