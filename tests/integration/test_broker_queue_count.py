"""The consumer watchdog's count of waiting tasks, on both brokers flashstock supports (real servers)."""

from __future__ import annotations

import pytest

from inventory import Settings
from sync.app import make_celery
from sync.consumer_watchdog import BrokerQueues
from tests.celery_workers import RABBITMQ_URL, require_rabbitmq, wait_for


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_waiting_tasks_are_counted_from_zero_on_either_broker(settings: Settings, broker: str) -> None:
    own = settings.with_overrides(celery_queue=f"{settings.key_prefix}:wdq")
    if broker == "rabbitmq":
        require_rabbitmq()
        own = own.with_overrides(celery_broker_url=RABBITMQ_URL)
    app = make_celery(own)
    counter = BrokerQueues(app, [app.amqp.queues[own.celery_queue]])
    try:
        assert counter.waiting() == 0  # an empty queue (on Redis: a list that does not exist) is 0, not None
        for _ in range(3):
            app.send_task("flashstock.expire_holds", queue=own.celery_queue)
        wait_for(lambda: counter.waiting() == 3, timeout=10)
    finally:
        counter.close()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(own.celery_queue)
        app.close()
