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


def _splice_includes(source: str) -> str:
    return _INCLUDE.sub(lambda m: _read(f"includes/{m.group(1)}.lua"), source)


@lru_cache(maxsize=1)
def load_sources() -> dict[str, ScriptSource]:
    """Every script in lua/, keyed by operation name (the file name before '-<keys>.lua')."""
    sources = {}
    for entry in resources.files("lua").iterdir():
        if entry.name.endswith(".lua"):
            name = entry.name.split("-", 1)[0]
            sources[name] = ScriptSource(name, entry.name, _splice_includes(entry.read_text("utf-8")))
    return sources


class Scripts:
    """The scripts registered on one Redis client; redis-py reloads them after SCRIPT FLUSH."""

    def __init__(self, redis: Redis) -> None:
        self._scripts: dict[str, Script] = {
            name: redis.register_script(src.source) for name, src in load_sources().items()
        }

    def call(self, name: str, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> list[Any]:
        """Run one script; `client` may be a pipeline."""
        return self._scripts[name](keys=keys, args=args, client=client)
