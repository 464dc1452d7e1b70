"""Redis connections: a server or a cluster from a URL, or an in-process fakeredis for the embedded mode."""

from __future__ import annotations

from urllib.parse import urlsplit

from redis import BlockingConnectionPool, ConnectionPool, Redis, RedisCluster
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry

from inventory.config import Settings
from inventory.resp import compact_packer

MEMORY_URL = "memory://"


def connect_redis(settings: Settings) -> Redis:
    """A Redis client with a deliberately sized pool and bounded timeouts (no request hangs).

    Chosen by measurement under gevent (BENCHMARKS.md, redis-py study): a blocking pool (a request
    waits up to the timeout for a connection instead of failing at once), RESP2 (redis-py 8's
    default RESP3 parser costs more per reply), no retries (a reserve or stock 'add' re-sent
    after a lost reply could apply twice) and a faster packer for plain commands (inventory/resp.py).
    """
    if settings.redis_url.startswith(MEMORY_URL):
        return _embedded_redis()
    if settings.redis_cluster:
        return connect_cluster(settings)  # type: ignore[return-value]
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_seconds,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        health_check_interval=0,
        protocol=2,
        retry=Retry(NoBackoff(), 0),
    )
    options = pool.connection_kwargs  # inventory/resp.py: less than half the packing cost of a reserve call
    options["command_packer"] = compact_packer(options.get("encoding", "utf-8"),
                                               options.get("encoding_errors", "strict"))
    return Redis(connection_pool=pool)


def cluster_nodes(url: str) -> list[ClusterNode]:
    """Startup nodes of 'redis+cluster://host:port[,host:port...]'."""
    netloc = urlsplit(url).netloc.rsplit("@", 1)[-1]
    nodes = []
    for item in filter(None, netloc.split(",")):
        host, _, port = item.rpartition(":")
        nodes.append(ClusterNode(host or "127.0.0.1", int(port or 6379)))
    if not nodes:
        raise ValueError(f"no cluster nodes in {url!r}")
    return nodes


def connect_cluster(settings: Settings) -> RedisCluster:
    """redis-py's RedisCluster: follows MOVED/ASK and refreshes the slot map after a failover itself.

    As for one node, a command whose connection fails is not re-sent (the caller sees the error and
    the next call goes to the new topology); redirections are not failures and are always followed.
    """
    parts = urlsplit(settings.redis_url)
    return RedisCluster(
        startup_nodes=cluster_nodes(settings.redis_url),
        username=parts.username,
        password=parts.password,
        ssl=parts.scheme.startswith("rediss"),
        max_connections=settings.redis_max_connections,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        protocol=2,
        retry=Retry(NoBackoff(), 0),
        require_full_coverage=False,  # the shards that are up keep selling while one fails over
    )


def is_cluster(redis: object) -> bool:
    """True for a RedisCluster client."""
    return isinstance(redis, RedisCluster)


def masters(redis: Redis) -> list[Redis]:
    """A plain client per master (one for a single server), for server-wide reads such as INFO."""
    if isinstance(redis, RedisCluster):
        return [node.redis_connection or redis.get_redis_connection(node) for node in redis.get_primaries()]
    return [redis]


def own_connection(client: Redis) -> Redis:
    """A client of the same server with a pool of its own, for a connection held for good (a pub/sub
    listener): the request pool is sized to the requests a worker serves at once."""
    pool = client.connection_pool
    return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **pool.connection_kwargs))


_EMBEDDED: Redis | None = None


def _embedded_redis() -> Redis:
    """One process-wide fakeredis with real Lua 5.1 (lupa): the embedded default."""
    global _EMBEDDED
    if _EMBEDDED is None:
        import fakeredis

        _EMBEDDED = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return _EMBEDDED
