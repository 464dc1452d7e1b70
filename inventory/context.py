"""What every core service shares: the Redis client, key space, scripts, clock and settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from redis import Redis

from inventory.clock import Clock, RedisClock, ScriptedClock
from inventory.config import Settings
from inventory.errors import raise_for_reply
from inventory.keys import KeySpace
from inventory.scripts import ScriptBatch, Scripts
from inventory.store import is_cluster


@dataclass
class Context:
    """Wiring for the core; build one per process with `Context.create`."""

    redis: Redis
    keys: KeySpace
    scripts: Scripts
    clock: Clock
    settings: Settings
    cluster: bool = False  # RedisCluster: every script call stays in one slot, nothing else may cross

    @classmethod
    def create(cls, redis: Redis, settings: Settings | None = None,
               clock: ScriptedClock | None = None) -> "Context":
        """Wire the core; time is Redis's own unless a test passes a virtual clock for both sides."""
        settings = settings or Settings()
        cluster = is_cluster(redis)
        keys = KeySpace(settings.key_prefix, settings.partitions_for(cluster))
        if clock is None:
            return cls(redis, keys, Scripts(redis), RedisClock(redis), settings, cluster)
        source = clock.bind(redis, keys.test_clocks)
        return cls(redis, keys, Scripts(redis, clock_source=source), clock, settings, cluster)

    def now_ms(self) -> int:
        """Redis's time in ms (display, admin input, sweep candidates); scripts read it themselves."""
        return self.clock.now_ms()

    def run(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        """Run a script and raise the mapped domain error for a negative reply code."""
        reply = self.scripts.call(script, keys, args)
        raise_for_reply(reply)
        return reply

    def script_batch(self) -> ScriptBatch:
        """Script calls pipelined on one node, sent one by one on a cluster (no scripts in cluster pipelines)."""
        return ScriptBatch(self.scripts, self.redis, self.cluster)

    def line_keys(self, skus: Sequence[str], token: str) -> list[str]:
        """stock, holds, buyers, the token's hold bucket of each SKU in order, as scripts take them per line."""
        return [key for sku in skus for key in self.keys.sku(sku).as_list(token)]

    def indexed_line_keys(self, skus: Sequence[str], token: str) -> list[str]:
        """line_keys plus each SKU's index bucket, for the scripts that add holds."""
        return [key for sku in skus for key in self.keys.sku(sku).as_indexed_list(token)]


def text(value: Any) -> str:
    """A Redis reply value as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_hash(raw: dict[Any, Any]) -> dict[str, str]:
    """HGETALL reply as a str -> str dict."""
    return {text(k): text(v) for k, v in raw.items()}
