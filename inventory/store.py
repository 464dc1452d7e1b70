"""Redis connections: a real server from a URL, or an in-process fakeredis for the embedded mode."""

from __future__ import annotations

from redis import Redis

from inventory.config import Settings

MEMORY_URL = "memory://"


def connect_redis(settings: Settings) -> Redis:
    """A Redis client with a deliberately sized pool and bounded timeouts (no request hangs)."""
    if settings.redis_url.startswith(MEMORY_URL):
        return _embedded_redis()
    return Redis.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        health_check_interval=0,
    )


_EMBEDDED: Redis | None = None


def _embedded_redis() -> Redis:
    """One process-wide fakeredis with real Lua 5.1 (lupa): the embedded default."""
    global _EMBEDDED
    if _EMBEDDED is None:
        import fakeredis

        _EMBEDDED = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return _EMBEDDED
