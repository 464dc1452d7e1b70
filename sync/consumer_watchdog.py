"""A worker that stays connected but stops taking tasks exits, so that its supervisor starts a fresh one.

Celery's Redis transport has more than once shipped a bug where a worker reconnects after the broker
restarts and then never consumes again (celery#8030, #8091, #8384, #9054, reported again for 5.6). Such a
worker looks alive: its process runs, its connection is up, it logs nothing. The outbox then stops
draining and holds stop expiring until someone notices. This step watches from outside the consumer:
every few seconds it asks the broker how many tasks wait in the queues this worker was started on. When
tasks have waited for WORKER_STALL_EXIT_SECONDS while the worker had a free slot and received nothing,
it logs why and stops the worker with exit code 75 (EX_TEMPFAIL); the supervisor (docker compose
`restart: unless-stopped`, systemd, Kubernetes) starts a new one, which consumes again. Tasks are
acknowledged late, so nothing is lost on the way out.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from celery import bootsteps
from celery.signals import task_received
from celery.worker import state as worker_state

from inventory.store import MEMORY_URL
from sync import runtime

log = logging.getLogger(__name__)

EXIT_CODE = os.EX_TEMPFAIL  # 75: "try again later"; any restart policy but "no" starts the worker again
EXIT_GRACE_SECONDS = 30.0  # a consumer loop too stuck to see the stop flag is ended this long after it


@dataclass
class StallWatch:
    """Decides from periodic samples whether a worker has stopped consuming (no I/O; the step samples)."""

    limit_s: float
    stalled_since: float | None = None

    def observe(self, now: float, waiting: int | None, free_slot: bool, last_received: float) -> bool:
        """One sample; True once tasks waited, with a slot free and nothing received, for limit_s."""
        if not waiting or not free_slot:  # nothing waits, the broker cannot be read, or the worker is busy
            self.stalled_since = None
            return False
        if self.stalled_since is None or last_received >= self.stalled_since:
            self.stalled_since = now  # (re)start the clock: the worker took a task since the last sample
            return False
        return now - self.stalled_since >= self.limit_s


class _Receipts:
    """When this process's consumer last received a task message (Celery's task_received signal)."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        task_received.connect(self._on_received, weak=False)

    def _on_received(self, **_: Any) -> None:
        self.last = time.monotonic()

    def close(self) -> None:
        task_received.disconnect(self._on_received)


class ConsumerWatchdog(bootsteps.StartStopStep):
    """Worker step: a daemon thread that stops the worker when its consumer has stalled (module docstring)."""

    label = "flashstock consumer watchdog"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._receipts: _Receipts | None = None

    def start(self, worker: Any) -> None:
        settings = runtime.settings()
        limit = settings.worker_stall_exit_seconds
        if limit <= 0 or settings.redis_url.startswith(MEMORY_URL):  # off, or embedded mode (no broker)
            return
        queues = list(worker.app.amqp.queues.consume_from.values())  # as started: a later cancel is a stall too
        self._receipts = _Receipts()
        self._thread = threading.Thread(target=self._run, name="flashstock-watchdog", daemon=True,
                                        args=(worker, queues, StallWatch(limit), self._receipts))
        self._thread.start()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._receipts is not None:
            self._receipts.close()

    def _run(self, worker: Any, queues: list[Any], watch: StallWatch, receipts: _Receipts) -> None:
        interval = max(1.0, watch.limit_s / 6)
        counter = BrokerQueues(worker.app, queues)
        names = [queue.name for queue in queues]
        try:
            while not self._stop.wait(interval):
                waiting = counter.waiting()
                free_slot = len(worker_state.active_requests) < capacity(worker)
                if watch.observe(time.monotonic(), waiting, free_slot, receipts.last):
                    stop_stalled_worker(waiting or 0, names, watch.limit_s)
                    return
        finally:
            counter.close()


def capacity(worker: Any) -> int:
    """Tasks the worker's pool runs at once (the solo pool: 1, whatever --concurrency says)."""
    return max(1, getattr(worker.pool, "limit", None) or worker.concurrency or 1)


class BrokerQueues:
    """Counts the messages waiting in some queues, over one broker connection kept between calls."""

    def __init__(self, app: Any, queues: list[Any]) -> None:
        self.app, self.queues = app, queues  # kombu Queue objects
        self._connection: Any = None

    def waiting(self) -> int | None:
        """Messages waiting in the queues, or None when the broker cannot be read."""
        try:
            if self._connection is None:
                self._connection = self.app.connection_for_read()
            channel = self._connection.default_channel
            # Declared as the worker declares them (idempotent): a passive declare fails on the Redis
            # transport for a queue with no messages, since an empty list does not exist there.
            return sum(queue(channel).queue_declare().message_count for queue in self.queues)
        except Exception as error:  # noqa: BLE001 - a broker that cannot be read gives no verdict
            log.debug("watchdog cannot count waiting tasks: %s: %s", type(error).__name__, error)
            self.close()
            return None

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # noqa: BLE001 - it is being dropped anyway
                pass
            self._connection = None


def stop_stalled_worker(waiting: int, queues: list[str], limit_s: float,
                        hard_exit: Callable[[int], None] = os._exit) -> None:
    """Ask the worker's own loop to stop with EXIT_CODE; end the process if that loop never gets to it."""
    log.error("consumer stalled: %d task(s) waiting in %s for %.0f s with a free slot and none received; "
              "exiting with %d so that the supervisor starts a fresh worker", waiting, ",".join(queues),
              limit_s, EXIT_CODE)
    worker_state.should_stop = EXIT_CODE  # the consumer loop checks it on every turn (warm shutdown)
    timer = threading.Timer(EXIT_GRACE_SECONDS, hard_exit, args=(EXIT_CODE,))
    timer.daemon = True
    timer.start()
