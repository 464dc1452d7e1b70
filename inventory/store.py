"""Redis connections: a real server from a URL, or an in-process fakeredis for the embedded mode."""

from __future__ import annotations

from redis import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from inventory.config import Settings

MEMORY_URL = "memory://"


def connect_redis(settings: Settings) -> Redis:
    """A Redis client with a deliberately sized pool and bounded timeouts (no request hangs).

    Chosen by measurement under gevent (BENCHMARKS.md, redis-py study): a blocking pool (a request
    waits up to the timeout for a connection instead of failing at once), RESP2 (redis-py 8's
    default RESP3 parser costs more per reply) and no retries (a reserve or stock 'add' re-sent
    after a lost reply could apply twice).
    """
    if settings.redis_url.startswith(MEMORY_URL):
        return _embedded_redis()
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
    return Redis(connection_pool=pool)


_EMBEDDED: Redis | None = None


def _embedded_redis() -> Redis:
    """One process-wide fakeredis with real Lua 5.1 (lupa): the embedded default."""
    global _EMBEDDED
    if _EMBEDDED is None:
        import fakeredis

        _EMBEDDED = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return _EMBEDDED
