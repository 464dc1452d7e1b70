"""A virtual clock for tests, shared by the Python side and the scripts (never used in production).

The scripts read the time from one Redis key instead of TIME, so every Context bound to the same
clock (several 'API hosts', a sweeper, an admin) sees one time, which only the test moves. The key is
'<prefix>.testclock{tag}' (Partition.test_clock), found from the prefix and partition tag of the
script's first key, so the
Lua source is the same for every test: the shared server caches one set of test scripts, not one per
test prefix.
"""

from __future__ import annotations

from redis import Redis

_LUA = """
-- Test clock: virtual time from '<prefix>.testclock{tag}' (tests/clocks.py), in place of lua/includes/clock.lua.
local function now_ms()
  local prefix, tag = string.match(KEYS[1], '^(.-):({[^}]*})')
  local key = prefix .. '.testclock' .. tag
  local value = redis.call('GET', key)
  if not value then error('test clock key ' .. key .. ' is missing: the test deleted it') end
  return tonumber(value)
end
"""


class ManualClock:
    """A clock that moves only when told to; `bind` gives the scripts the same time."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self._now = start_ms
        self._bound: list[tuple[Redis, str]] = []

    def now_ms(self) -> int:
        return self._now

    def bind(self, redis: Redis, keys: list[str]) -> str:
        for key in keys:
            if ".testclock{" not in key:
                raise ValueError(f"the scripts find the clock at '<prefix>.testclock{{tag}}', not {key!r}")
            self._bound.append((redis, key))
            redis.set(key, self._now)
        return _LUA

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1000)
        self.sync()

    def set_ms(self, now_ms: int) -> None:
        self._now = now_ms
        self.sync()

    def sync(self) -> None:
        """Write the time to every bound Redis (again after a test deleted its keys)."""
        for redis, key in self._bound:
            redis.set(key, self._now)
