"""The worker's Celery app for the watchdog tests: sync.app plus two test tasks and, on request, a
consumer that stops taking tasks right after it connects (TEST_STOP_CONSUMING=1), as the upstream bug does."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import bootsteps

from sync import runtime
from sync.app import app


@app.task(name="tests.sleep")
def sleep(seconds: float) -> None:
    """Keep the worker busy."""
    time.sleep(seconds)


@app.task(name="tests.mark")
def mark(key: str) -> None:
    """Leave a key in Redis: proof that a worker ran this task."""
    runtime.inventory().redis.set(key, "1", ex=600)


class StopConsuming(bootsteps.StartStopStep):
    """Consumer step: the connection stays up, but no queue is consumed any more."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, consumer: Any) -> None:
        if os.environ.get("TEST_STOP_CONSUMING") == "1":
            for name in list(consumer.app.amqp.queues.consume_from):
                consumer.cancel_task_queue(name)


app.steps["consumer"].add(StopConsuming)
