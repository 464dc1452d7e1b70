"""Loads the Lua scripts shipped in the `lua` package and registers each once with redis-py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Sequence

from redis import Redis
from redis.commands.core import Script

_INCLUDE = re.compile(r'^--@include "([a-z_]+)"\s*$', re.MULTILINE)


@dataclass(frozen=True)
class ScriptSource:
    """One script: its operation name, file name and source with includes spliced in."""

    name: str
    filename: str
    source: str


def _read(path: str) -> str:
    return resources.files("lua").joinpath(path).read_text(encoding="utf-8")


def _splice_includes(source: str, overrides: dict[str, str] | None = None) -> str:
    overrides = overrides or {}
    return _INCLUDE.sub(lambda m: overrides.get(m.group(1)) or _read(f"includes/{m.group(1)}.lua"), source)


def _load(overrides: dict[str, str] | None) -> dict[str, ScriptSource]:
    sources = {}
    for entry in resources.files("lua").iterdir():
        if entry.name.endswith(".lua"):
            name = entry.name.split("-", 1)[0]
            sources[name] = ScriptSource(name, entry.name, _splice_includes(entry.read_text("utf-8"), overrides))
    return sources


@lru_cache(maxsize=1)
def load_sources() -> dict[str, ScriptSource]:
    """Every script in lua/, keyed by operation name (the file name before '-<keys>.lua')."""
    return _load(None)


@lru_cache(maxsize=4)
def with_clock(clock_source: str) -> dict[str, ScriptSource]:
    """Every script with `clock_source` in place of includes/clock.lua (tests' virtual clock)."""
    return _load({"clock": clock_source})


class Scripts:
    """The scripts registered on one Redis client; redis-py reloads them after SCRIPT FLUSH."""

    def __init__(self, redis: Redis, clock_source: str | None = None) -> None:
        sources = with_clock(clock_source) if clock_source else load_sources()
        self._scripts: dict[str, Script] = {
            name: redis.register_script(src.source) for name, src in sources.items()
        }

    def call(self, name: str, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> list[Any]:
        """Run one script; `client` may be a pipeline."""
        return self._scripts[name](keys=keys, args=args, client=client)
