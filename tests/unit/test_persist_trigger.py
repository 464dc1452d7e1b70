"""The sync layer's trigger and configuration: prompt persistence is debounced and never fails a checkout."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
import structlog

from inventory import Inventory, Settings
from inventory import housekeeping
from sync import runtime, tasks
from sync.app import celery_config


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    settings = Settings(key_prefix="n", redis_url="redis://example:6379/0", celery_queue="q-test")
    inv = Inventory(fakeredis.FakeRedis(), settings)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(runtime, "settings", lambda: settings)
    monkeypatch.setattr(runtime, "inventory", lambda: inv)
    monkeypatch.setattr(tasks.persist_outbox, "apply_async", lambda **kw: sent.append(kw))
    return sent


def test_notify_checkout_queues_one_drain_until_that_drain_starts(wired: list[dict[str, Any]]) -> None:
    assert tasks.notify_checkout("o_1") is True
    assert [tasks.notify_checkout(f"o_{n}") for n in range(5)] == [False] * 5
    assert wired == [{"queue": "q-test", "retry": False, "headers": None}]
    runtime.inventory().redis.delete(tasks._flag())  # what persist_outbox does first
    assert tasks.notify_checkout("o_9") is True and len(wired) == 2


def test_notify_checkout_hands_the_request_id_to_the_drain_it_queues(wired: list[dict[str, Any]]) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-7")
    try:
        assert tasks.notify_checkout("o_1") is True
    finally:
        structlog.contextvars.clear_contextvars()
    runtime.inventory().redis.delete(tasks._flag())
    assert tasks.notify_checkout("o_2", request_id="req-8") is True
    assert [sent["headers"] for sent in wired] == [{"request_id": "req-7"}, {"request_id": "req-8"}]


def test_notify_checkout_swallows_a_broker_failure(wired: list, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.persist_outbox, "apply_async", broken)
    assert tasks.notify_checkout("o_1") is False


def test_notify_checkout_wakes_the_embedded_housekeeper(monkeypatch: pytest.MonkeyPatch) -> None:
    woken: list[bool] = []

    class Keeper:
        def wake(self) -> None:
            woken.append(True)

    monkeypatch.setattr(housekeeping, "active", lambda: Keeper())
    assert tasks.notify_checkout("o_1") is True and woken == [True]


def test_celery_is_json_only_without_results_with_late_acks_and_prefixed_broker_keys() -> None:
    config = celery_config(Settings(key_prefix="shop", redis_url="redis://r:6379/0", celery_queue="orders"))
    assert (config["task_serializer"], config["accept_content"], config["result_backend"]) == ("json", ["json"], None)
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["broker_url"] == "redis://r:6379/0" and config["task_default_queue"] == "orders"
    assert config["broker_transport_options"]["global_keyprefix"] == "shop:celery:"
    assert config["beat_scheduler"] == "sync.beat.ResilientScheduler" and config["redbeat_key_prefix"] == "shop:redbeat"
    assert {"persist-outbox", "expire-holds", "reconcile-dirty", "recovery-check"} <= set(config["beat_schedule"])


def test_a_rabbitmq_broker_gets_no_redis_transport_options() -> None:
    config = celery_config(Settings(redis_url="redis://r:6379/0", celery_broker_url="amqp://guest:guest@mq:5672//"))
    assert config["broker_url"].startswith("amqp://") and "broker_transport_options" not in config


def test_the_redis_brokers_visibility_timeout_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    default = celery_config(Settings(redis_url="redis://r:6379/0"))["broker_transport_options"]
    assert default["visibility_timeout"] == 3600
    monkeypatch.setenv("BROKER_VISIBILITY_TIMEOUT_SECONDS", "10")
    config = celery_config(Settings.from_env(redis_url="redis://r:6379/0"))
    assert config["broker_transport_options"]["visibility_timeout"] == 10
    with pytest.raises(ValueError):
        Settings(broker_visibility_timeout_seconds=0)
