"""One clock: Redis's. Scripts read TIME themselves; the core reads it for display and admin input.

No host clock decides anything: API hosts whose clocks differ, or a request whose arguments were built
before another ran, cannot disagree about whether a hold is alive, because only the script that acts
reads the time (lua/includes/clock.lua). Tests replace both sides with a virtual clock through
`ScriptedClock`, which only code that builds a Context by hand can pass; settings cannot select it.
"""

from __future__ import annotations

from typing import Protocol

from redis import Redis


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch, UTC."""


class ScriptedClock(Clock, Protocol):
    """A clock the scripts read too (tests): `bind` returns the Lua that replaces includes/clock.lua."""

    def bind(self, redis: Redis, keys: list[str]) -> str:
        """Attach to a Redis client; the returned Lua defines now_ms() reading the key of the script's
        partition, one of `keys` (one per partition, each in its partition's slot)."""


class RedisClock:
    """Redis's own clock (TIME), the one the scripts decide by; one round trip per read."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def now_ms(self) -> int:
        reply = self.redis.time()
        if isinstance(reply, dict):  # RedisCluster asks every node; any master's clock will do for display
            reply = next(iter(reply.values()))
        seconds, micros = reply
        return int(seconds) * 1000 + int(micros) // 1000
