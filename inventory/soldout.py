"""Sold-out answers without Redis: what one process has learned about sold-out SKUs, kept honest by pub/sub.

During a stampede most reserve requests are for a SKU that is sold out. The first refusal a process
sees teaches it the SKU's available count; later requests for more than that are answered `sold_out`
from memory, without a script call. Every script that makes units available again PUBLISHes on the
stock key's own name (lua/includes/common.lua `announce_available`; inventory/reconcile.py for
repairs and rebuilds), and each process's listener forgets the SKU as soon as the message arrives.

The cache answers only while its listener is subscribed: before the subscription is confirmed, after
any error on it (messages may have been missed), and after a reconnect until it is confirmed again, it
answers nothing and every request goes to Redis. A short time-to-live bounds what a lost message could
cost. Only `sold_out` is cached; every other answer (limits, sale windows, holds) comes from Redis.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from inventory.errors import SoldOut

log = logging.getLogger(__name__)

_RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0)
_PING_SECONDS = 1.0  # the listener PINGs its connection this often ...
_SILENCE_SECONDS = 3.0  # ... and stops trusting the cache if nothing, not even a PONG, came for this long


def _cached(refusal: SoldOut) -> SoldOut:
    """Mark a refusal as answered from this process's memory (the API counts those apart)."""
    refusal.cached = True  # type: ignore[attr-defined]
    return refusal


@dataclass(frozen=True)
class Learned:
    """A SKU's refusal as a script answered it."""

    available: int
    details: dict[str, Any]
    until: float  # time.monotonic() after which it is not trusted (TTL, or the SKU's next hold expiry)


class SoldOutCache:
    """Per-process memory of sold-out SKUs; trusted only while `listening` says the listener is subscribed."""

    def __init__(self, ttl_ms: int, stock_key_of: Callable[[str], str | list[str]]) -> None:
        """`stock_key_of(sku)`: the stock key (or, for a SKU split into buckets, every bucket's key) whose
        announcement means units of the SKU came back."""
        self.ttl = ttl_ms / 1000
        self.stock_key_of = stock_key_of
        self._sku_of_key: dict[str, str] = {}
        self._learned: dict[str, Learned] = {}
        self.listening = False
        self.generation = 0  # bumped by every announcement received and every reset
        self.answered = 0  # sold_out answers served from memory (for tests and metrics)
        self._lock = threading.Lock()  # learn's check-and-store against the listener's forget (OS threads)

    def begin(self) -> tuple[int, float]:
        """Taken before a script call: a refusal is learned only if no announcement arrived meanwhile
        (units announced while the refusal was in flight would otherwise be forgotten before learned),
        and its time-to-live counts from here, not from when a busy process got to the reply."""
        return self.generation, time.monotonic()

    def refuse(self, lines: Iterable[tuple[str, int]]) -> None:
        """Raise SoldOut, as the script would, if a line asks for more than its SKU had when refused."""
        if not self.listening or not self._learned:
            return
        now = time.monotonic()
        for sku, qty in lines:
            learned = self._learned.get(sku)
            if learned is None:
                continue
            if now >= learned.until:
                self._learned.pop(sku, None)
                continue
            if qty > learned.available:
                self.answered += 1
                # Raised without a local name: a frame holding the exception that holds the frame (through
                # its traceback) is a reference cycle, 34 objects of garbage per cached answer, which only
                # full collections freed (10-80 ms pauses of the whole worker under a sold-out stampede).
                raise _cached(SoldOut("Not enough stock available.", **{**learned.details, "requested": qty}))

    def knows(self, sku: str) -> bool:
        """Whether a request for this SKU would be refused from memory now (for one unit)."""
        learned = self._learned.get(sku)
        return self.listening and learned is not None and learned.available < 1 and time.monotonic() < learned.until

    def learn(self, error: SoldOut, ticket: tuple[int, float]) -> None:
        """Remember a script's refusal (only while listening, and only if nothing was announced since
        `begin` gave the ticket: a message could be missed otherwise)."""
        generation, asked_at = ticket
        sku, available = error.details.get("sku"), error.details.get("available")
        if not isinstance(sku, str) or not isinstance(available, int):
            return
        true_for = getattr(error, "true_for_ms", None)
        if true_for == 0:
            return  # a hold expires now: the next request reclaims it
        ttl = self.ttl if true_for is None or true_for < 0 else min(self.ttl, true_for / 1000)
        learned = Learned(available, dict(error.details), asked_at + ttl)
        with self._lock:
            if self.listening and generation == self.generation:
                keys = self.stock_key_of(sku)
                for key in [keys] if isinstance(keys, str) else keys:
                    self._sku_of_key[key] = sku
                self._learned[sku] = learned

    def forget_key(self, stock_key: str) -> None:
        """A script announced units back on this stock key."""
        with self._lock:
            self.generation += 1
            sku = self._sku_of_key.get(stock_key)
            if sku is not None:
                self._learned.pop(sku, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._learned.clear()


_process = {"forks": 0}  # os.fork()s between the interpreter's start and this process


def _forked() -> None:
    _process["forks"] += 1


os.register_at_fork(after_in_child=_forked)


class SoldOutListener:
    """One pub/sub subscription per process that keeps a SoldOutCache honest; restarts after a fork."""

    def __init__(self, cache: SoldOutCache, connect: Callable[[], Any], pattern: str) -> None:
        self.cache = cache
        self.connect = connect  # a plain (non-cluster) Redis client to subscribe on
        self.pattern = pattern
        self._started_in: int | None = None  # the process (by fork count) whose listener is running
        self._stop = threading.Event()

    def ensure_started(self) -> None:
        """Start the listener in this process (a forked worker starts its own).

        Asked on every reserve request: a fork counter, not os.getpid(), which is a system call each time.
        """
        if self._started_in == _process["forks"]:
            return
        self._started_in = _process["forks"]
        self.cache.listening = False
        self.cache.clear()
        self._stop = threading.Event()
        # The thread holds the listener weakly: an app that is dropped (tests make many) ends its thread.
        threading.Thread(target=_listen, args=(weakref.ref(self), self._stop), name="flashstock-soldout",
                         daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.cache.listening = False
        self._started_in = None


def _listen(ref: "weakref.ReferenceType[SoldOutListener]", stop: threading.Event) -> None:
    listener = ref()
    if listener is None:
        return
    cache = listener.cache
    del listener
    try:
        _listen_until_stopped(ref, stop)
    finally:  # however the thread ends (GreenletExit included), the cache stops answering
        cache.listening = False


def _listen_until_stopped(ref: "weakref.ReferenceType[SoldOutListener]", stop: threading.Event) -> None:
    failures = 0
    while not stop.is_set():
        listener = ref()
        if listener is None:
            return
        cache, pattern = listener.cache, listener.pattern
        pubsub = None
        try:
            pubsub = listener.connect().pubsub(ignore_subscribe_messages=False)
            del listener
            pubsub.psubscribe(pattern)
            heard = pinged = time.monotonic()
            while not stop.is_set() and ref() is not None:
                now = time.monotonic()
                if now - heard > _SILENCE_SECONDS:  # a peer gone without a reset: no error would ever come
                    raise ConnectionError(f"no answer from Redis for {now - heard:.1f} s")
                if now - pinged >= _PING_SECONDS:
                    pubsub.ping()
                    pinged = now
                message = pubsub.get_message(timeout=0.5)
                if message is None:
                    continue
                heard = time.monotonic()
                if message["type"] == "psubscribe":
                    cache.clear()  # anything learned before this point may have missed a message
                    cache.listening = True
                    failures = 0
                elif message["type"] == "pmessage":
                    channel = message["channel"]
                    cache.forget_key(channel.decode() if isinstance(channel, bytes) else channel)
        except Exception as error:  # noqa: BLE001 - any failure: stop trusting, reconnect with backoff
            cache.listening = False
            cache.clear()
            if failures == 0:
                log.warning("sold-out listener lost its subscription (answers go to Redis until it is back): %s",
                            error)
            stop.wait(_RECONNECT_SECONDS[min(failures, len(_RECONNECT_SECONDS) - 1)])
            failures += 1
        finally:
            if stop.is_set() or ref() is None:
                cache.listening = False
            if pubsub is not None:
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001 - closing a broken connection
                    pass
