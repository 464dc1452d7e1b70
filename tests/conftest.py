"""Shared fixtures: per-test key prefixes on a real redis-server, fakeredis for the fast tier."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import fakeredis
import pytest
import redis

from inventory import Inventory, Settings
from tests.clocks import ManualClock

if TYPE_CHECKING:
    from redis.cluster import RedisCluster

    from tests.celery_workers import CeleryWorker
    from tests.own_cluster import OwnCluster
    from tests.own_redis import OwnRedis

REDIS_URL = os.environ.get("FLASHSTOCK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get(
    "FLASHSTOCK_TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI") == "true"


def server_unavailable(what: str, error: Exception) -> None:
    """In CI a missing server fails the test; on a laptop it skips with the reason."""
    message = f"{what} is not reachable ({error}); scripts/services.sh starts it"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Remove only the keys this test created (never FLUSH a shared server)."""
    batch = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


@pytest.fixture(scope="session")
def redis_server() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, max_connections=256, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as error:
        server_unavailable("redis-server", error)
    return client


@pytest.fixture
def key_prefix() -> str:
    return f"fstest:{uuid.uuid4().hex[:12]}"


BACKENDS = ("redis-server", "redis-cluster")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "single_node(reason): run only on the single redis-server, not also on the Redis Cluster")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on a real Redis (`real_redis` and what builds on it) runs on one node and on the cluster,
    unless marked `single_node` with the reason."""
    if "redis_backend" in metafunc.fixturenames and "real_redis" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("single_node")
        metafunc.parametrize("redis_backend", BACKENDS[:1] if marker else BACKENDS, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop cluster variants that would only repeat a single-node run: tests marked `single_node` that get
    the cluster through `any_redis`, and the API's Flask-only path (the cluster runs the API tests once,
    on the hot path; which path answers does not depend on the backend, tests/api/test_hotpath.py)."""
    keep, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        on_cluster = "redis-cluster" in (params.get("redis_backend"), params.get("any_redis"))
        if on_cluster and (item.get_closest_marker("single_node") or params.get("api_settings") is False):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def backend_of(request: pytest.FixtureRequest) -> str:
    """'redis-cluster' when this test instance runs on the cluster (as `redis_backend` or `any_redis`)."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    if "redis-cluster" in (params.get("redis_backend"), params.get("any_redis")):
        return "redis-cluster"
    return "redis-server"


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest) -> str:
    """'redis-server' or 'redis-cluster': which real Redis this test instance runs on."""
    return getattr(request, "param", None) or backend_of(request)


@pytest.fixture
def real_redis(redis_backend: str, redis_server: redis.Redis, key_prefix: str,
               request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """The shared redis-server, or a RedisCluster client on the session cluster (redis_backend)."""
    if redis_backend == "redis-cluster":
        yield request.getfixturevalue("cluster_redis")
    else:
        yield redis_server
    # On the cluster the Celery broker and redbeat still live on the single server: clean both.
    delete_prefix(redis_server, key_prefix)
    delete_test_clocks(redis_server, key_prefix)


def delete_test_clocks(client: redis.Redis, prefix: str) -> None:
    """The test clock keys '<prefix>.testclock{tag}' (tests/clocks.py), outside the prefix on purpose."""
    clocks = list(client.scan_iter(match=f"{prefix}.testclock*", count=1000))
    for key in clocks:
        client.delete(key)


@pytest.fixture(params=["fakeredis", *BACKENDS])
def any_redis(request: pytest.FixtureRequest, key_prefix: str) -> Iterator[redis.Redis]:
    """The same test on fakeredis (Lua 5.1 via lupa), a real redis-server (the judge) and a Redis Cluster."""
    if request.param == "fakeredis":
        yield fakeredis.FakeRedis(server=fakeredis.FakeServer())
        return
    yield request.getfixturevalue("real_redis")  # real_redis follows this param through backend_of


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator["OwnRedis"]:
    """A private redis-server on a free port, for tests that flush, stall or kill it."""
    from tests.own_redis import OwnRedis

    server = OwnRedis(tmp_path)
    try:
        server.start()
    except (OSError, AssertionError) as error:
        server_unavailable("redis-server (own instance)", error)
    yield server
    server.stop()


def start_cluster(directory: Path, masters: int = 3, replicas_per_master: int = 0) -> "OwnCluster":
    """An OwnCluster started under `directory`; a cluster that cannot start fails in CI, else skips."""
    from tests.own_cluster import ClusterStartError, OwnCluster

    try:
        return OwnCluster(directory, masters=masters, replicas_per_master=replicas_per_master).start()
    except (OSError, ClusterStartError) as error:
        server_unavailable(f"Redis Cluster ({masters} masters x {replicas_per_master} replicas)", error)
        raise  # unreachable: server_unavailable fails or skips


def delete_cluster_prefix(cluster: "OwnCluster", prefix: str) -> None:
    """Remove only one test's keys (and its test clocks) from every master of a cluster."""
    for port in cluster.masters():  # SCAN is per node: visit every master with a plain client
        node = cluster.node(port)
        for pattern in (f"{prefix}:*", f"{prefix}.testclock*"):
            keys = list(node.scan_iter(match=pattern, count=1000))
            with node.pipeline(transaction=False) as pipe:
                for key in keys:  # one key per UNLINK: a node refuses multi-key commands across slots
                    pipe.unlink(key)
                pipe.execute()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator["OwnCluster"]:
    """One local 3-master Redis Cluster (no replicas) for the whole session, stopped at the end."""
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_redis(redis_cluster: "OwnCluster", key_prefix: str) -> Iterator["RedisCluster"]:
    """A RedisCluster client on the session cluster; afterwards only this test's keys are removed."""
    client = redis_cluster.client()
    yield client
    client.close()
    delete_cluster_prefix(redis_cluster, key_prefix)


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator["OwnCluster"]:
    """A private 3-master cluster with one replica per master, for failover tests; stopped afterwards."""
    cluster = start_cluster(tmp_path / "replicated-cluster", replicas_per_master=1)
    yield cluster
    cluster.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(key_prefix: str, request: pytest.FixtureRequest) -> Settings:
    """This test's prefix and Redis URL; on the cluster, the Celery broker is the single server (its own
    '<prefix>:celery:' keys), as a cluster deployment names one (Settings.broker_url)."""
    if backend_of(request) == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return Settings(key_prefix=key_prefix, redis_url=cluster.url, celery_broker_url=REDIS_URL,
                        recovery_on_script_loss=False)
    # No recovery check on a lost script cache here: the first call on a fresh server would check a
    # database this test never filled (tests/integration/test_restart_from_old_snapshot.py checks it).
    return Settings(key_prefix=key_prefix, redis_url=REDIS_URL, recovery_on_script_loss=False)


@pytest.fixture
def inv(any_redis: redis.Redis, settings: Settings, clock: ManualClock) -> Inventory:
    return Inventory(any_redis, settings, clock)


@pytest.fixture
def real_inv(real_redis: redis.Redis, settings: Settings, clock: ManualClock) -> Inventory:
    return Inventory(real_redis, settings, clock)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A DATABASE_URL pointing at a fresh schema of the test database, dropped afterwards.

    Other processes (gunicorn, Celery workers) given this URL see the same schema, because the
    schema is selected by the libpq `options=-csearch_path=...` parameter in the URL itself.
    """
    import sqlalchemy as sa

    schema = f"fstest_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(DATABASE_URL, poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as error:
        server_unavailable("PostgreSQL", error)
    try:
        yield f"{DATABASE_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def migrated_db_url(pg_schema_url: str) -> str:
    """pg_schema_url with the Alembic migrations applied (as `flashstock db upgrade` does)."""
    from inventory.migrations import upgrade

    upgrade(pg_schema_url)
    return pg_schema_url


@pytest.fixture
def pg_sessions(migrated_db_url: str) -> Iterator["sessionmaker"]:  # noqa: F821 - sqlalchemy sessionmaker
    """A session factory on the migrated per-test schema; its engine is disposed afterwards."""
    from inventory.db import make_engine, make_session_factory

    engine = make_engine(migrated_db_url, pool_size=2)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def workers() -> Iterator[list["CeleryWorker"]]:
    """Real Celery worker processes a test starts (tests/celery_workers.py); each is stopped afterwards."""
    started: list["CeleryWorker"] = []
    yield started
    for worker in started:
        worker.stop()
