"""Loads the Lua scripts shipped in the `lua` package and registers each once with redis-py."""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Iterator, Sequence

from redis import ConnectionPool, Redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError, ResponseError

from inventory.errors import Unavailable

CHECK_WAIT_SECONDS = 10.0  # how long a call waits for its process's check after a lost script cache
_INCLUDE = re.compile(r'^--@include "([a-z_]+)"\s*$', re.MULTILINE)
_DEFINITION = re.compile(r"^local\s+(?:function\s+([A-Za-z_]\w*)|([A-Za-z_][\w ,]*?)\s*=)", re.MULTILINE)
_NAME = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class ScriptSource:
    """One script: its operation name, file name and source with includes spliced in."""

    name: str
    filename: str
    source: str


def _read(path: str) -> str:
    return resources.files("lua").joinpath(path).read_text(encoding="utf-8")


def _definitions(include: str) -> list[tuple[set[str], str]]:
    """An include's top-level `local` definitions: (names defined, text with the comments before it)."""
    starts = []
    for match in _DEFINITION.finditer(include):
        start = match.start()
        while True:  # the comment block right above a definition goes with it
            above = include.rfind("\n", 0, max(start - 1, 0)) + 1
            if start == 0 or not include[above:start].startswith("--"):
                break
            start = above
        names = {match.group(1)} if match.group(1) else {n.strip() for n in match.group(2).split(",")}
        starts.append((start, names))
    ends = [start for start, _ in starts[1:]] + [len(include)]
    return [(names, include[start:end]) for (start, names), end in zip(starts, ends)]


def _splice_includes(source: str, overrides: dict[str, str] | None = None) -> str:
    """The script with each `--@include` replaced by the definitions of that include the script uses,
    directly or through another definition. Redis runs a script's whole body on every call, so every
    helper defined costs every call (a closure each: ~4 µs for all of common.lua), used or not."""
    overrides = overrides or {}
    includes = [(m, _definitions(overrides.get(m.group(1)) or _read(f"includes/{m.group(1)}.lua")))
                for m in _INCLUDE.finditer(source)]
    needed = set(_NAME.findall(_INCLUDE.sub("", source)))
    kept: set[tuple[int, int]] = set()
    every = [(i, j, names, text) for i, (_, chunks) in enumerate(includes) for j, (names, text) in enumerate(chunks)]
    for i, j, names, text in reversed(every):  # a definition can only use the ones above it
        if names & needed:
            kept.add((i, j))
            needed |= set(_NAME.findall(text))
    spliced = {m.start(): "".join(text for j, (_, text) in enumerate(chunks) if (i, j) in kept)
               for i, (m, chunks) in enumerate(includes)}
    return _INCLUDE.sub(lambda m: spliced[m.start()], source)


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


def _sends_directly(redis: Any) -> bool:
    """Whether EVALSHA can go straight onto one of the client's pooled connections: a plain
    single-node `Redis` on a pool (not a cluster client, a fake, or a single-connection client)."""
    return type(redis) is Redis and redis.connection is None and isinstance(redis.connection_pool, ConnectionPool)


class Scripts:
    """The scripts registered on one Redis client; redis-py reloads them after SCRIPT FLUSH.

    A server that lost its script cache (NOSCRIPT) was restarted, failed over or flushed: its data may
    be an older snapshot than what PostgreSQL has persisted. With `on_cache_lost` set (the recovery
    check, inventory/recovery.py `check_before_loading`), no script is loaded again before that check
    has run, so the first sale on a rolled-back server cannot happen before the rollback is repaired.
    One check per process at a time; calls that met NOSCRIPT while it ran wait for it and share it.
    """

    def __init__(self, redis: Redis, clock_source: str | None = None) -> None:
        sources = with_clock(clock_source) if clock_source else load_sources()
        self._redis = redis
        self._scripts: dict[str, Script] = {
            name: redis.register_script(src.source) for name, src in sources.items()
        }
        self.on_cache_lost: Callable[[], None] | None = None
        self._check_lock = threading.Lock()
        self._checked_from = -1.0  # monotonic time the last finished check started
        self._failure: tuple[float, Exception] | None = None  # when the last failed check started, and why
        self._local = threading.local()
        self._evalsha = self._evalsha_on_pooled_connection if _sends_directly(redis) else redis.evalsha

    def call(self, name: str, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> list[Any]:
        """Run one script; `client` may be a pipeline."""
        script = self._scripts[name]
        if client is not None:
            return script(keys=keys, args=args, client=client)
        try:
            return self._evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.cache_lost(time.monotonic())
            return script(keys=keys, args=args)  # loads it, then runs it

    def _evalsha_on_pooled_connection(self, *command: Any) -> Any:
        """EVALSHA sent and read on a pooled connection through redis-py's public Connection API.

        `Redis.execute_command` adds per-command work that a script call does not use (retry wrapper,
        which is off here, OpenTelemetry no-op hooks, release events): about 4% of a 201's instructions
        in the API process (BENCHMARKS.md, "Issue 13, fifth pass"). The safety is the same:
        `send_command` and `read_response` disconnect the connection on any error or interruption, the
        pool reconnects a connection with unread data, and EVALSHA has no reply callback to apply.
        """
        pool = self._redis.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_command("EVALSHA", *command)
            return conn.read_response()
        finally:
            pool.release(conn)

    def missing(self, names: Sequence[str]) -> bool:
        """Whether the server lacks any of these scripts (one SCRIPT EXISTS round trip)."""
        return not all(self._redis.script_exists(*(self._scripts[n].sha for n in set(names))))

    @contextmanager
    def checking(self) -> Iterator[None]:
        """While the recovery check (or a rebuild) runs in this thread: its own scripts load as usual."""
        before = getattr(self._local, "checking", False)
        self._local.checking = True
        try:
            yield
        finally:
            self._local.checking = before

    def cache_lost(self, seen_at: float) -> None:
        """Run `on_cache_lost` unless a check that started after `seen_at` already finished."""
        if self.on_cache_lost is None or getattr(self._local, "checking", False):
            return  # the check itself runs scripts: those load as usual
        if not self._check_lock.acquire(timeout=CHECK_WAIT_SECONDS):  # this process's check is long: a rebuild
            raise Unavailable("Redis came back and its state is being checked; try again shortly.")
        try:
            if self._checked_from >= seen_at:
                return
            if self._failure is not None and self._failure[0] >= seen_at:
                raise self._failure[1]  # the check these calls waited for failed: so do they, at once
            started = time.monotonic()
            try:
                with self.checking():
                    self.on_cache_lost()
            except Exception as error:
                self._failure = (started, error)
                raise
            self._checked_from = started
        finally:
            self._check_lock.release()


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
        self._names: list[str] = []  # scripts queued on the pipeline

    def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Queue one script call."""
        if self._pipe is not None:
            self._scripts.call(name, keys, args, client=self._pipe)
            self._names.append(name)
        else:
            self._calls.append((name, keys, args))

    def execute(self) -> list[Any]:
        """Run what was queued; replies (or ResponseErrors) in order."""
        if self._pipe is not None:
            if self._scripts.on_cache_lost is not None and self._names:
                seen_at = time.monotonic()
                if self._scripts.missing(self._names):
                    self._scripts.cache_lost(seen_at)  # before the pipeline loads them
            self._names.clear()
            return self._pipe.execute(raise_on_error=False)
        replies: list[Any] = []
        for name, keys, args in self._calls:
            try:
                replies.append(self._scripts.call(name, keys, args))
            except ResponseError as error:
                replies.append(error)
        self._calls.clear()
        return replies
