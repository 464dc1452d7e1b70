"""Loads the Lua scripts shipped in the `lua` package and registers each once with redis-py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Sequence

from redis import Redis
from redis.commands.core import Script
from redis.exceptions import ResponseError

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


class ScriptBatch:
    """Script calls sent in one pipelined round trip on one node, and one call at a time on a cluster,
    where redis-py refuses scripts in a pipeline (each call may go to another node anyway).

    `execute()` gives each call's reply, or the ResponseError it raised, in call order, as a pipeline's
    `execute(raise_on_error=False)` does.
    """

    def __init__(self, scripts: Scripts, redis: Any, cluster: bool) -> None:
        self._scripts = scripts
        self._pipe = None if cluster else redis.pipeline(transaction=False)
        self._calls: list[tuple[str, Sequence[str], Sequence[Any]]] = []

    def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Queue one script call."""
        if self._pipe is not None:
            self._scripts.call(name, keys, args, client=self._pipe)
        else:
            self._calls.append((name, keys, args))

    def execute(self) -> list[Any]:
        """Run what was queued; replies (or ResponseErrors) in order."""
        if self._pipe is not None:
            return self._pipe.execute(raise_on_error=False)
        replies: list[Any] = []
        for name, keys, args in self._calls:
            try:
                replies.append(self._scripts.call(name, keys, args))
            except ResponseError as error:
                replies.append(error)
        self._calls.clear()
        return replies
