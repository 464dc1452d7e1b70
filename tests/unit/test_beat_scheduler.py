"""The beat scheduler keeps going through Redis errors, a lost lock and a flushed schedule (fakeredis)."""

from __future__ import annotations

import time
from typing import Any, Iterator

import fakeredis
import pytest
import redis
from celery import Celery

from inventory import Settings
from sync.app import celery_config
from sync.beat import RETRY_SECONDS, ResilientScheduler

LOCK = "t:redbeat::lock"


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


def _scheduler(server: fakeredis.FakeServer, sent: list[str]) -> ResilientScheduler:
    app = Celery("t")
    app.conf.update(celery_config(Settings(key_prefix="t", redis_url="redis://unused:6379/0")))
    app.conf.broker_url = "memory://"
    app.conf.beat_schedule = {"often": {"task": "t.noop", "schedule": 0.01}}  # due again after 10 ms
    app.redbeat_redis = fakeredis.FakeRedis(server=server, decode_responses=True)  # redbeat's client
    scheduler = ResilientScheduler(app=app)
    scheduler.apply_async = lambda entry, **_: sent.append(entry.name)  # type: ignore[method-assign]
    return scheduler


@pytest.fixture
def beats(server: fakeredis.FakeServer) -> Iterator[tuple[list[ResilientScheduler], list[list[str]]]]:
    sent: list[list[str]] = [[], []]
    yield [_scheduler(server, sent[0]), _scheduler(server, sent[1])], sent


def _later() -> None:
    time.sleep(0.02)  # every entry is due again


def test_a_free_lock_is_taken_by_one_beat_and_the_other_stands_by(beats: Any) -> None:
    (first, second), sent = beats
    _later()
    first.tick()
    assert second.tick() == second.max_interval
    assert "often" in sent[0] and sent[1] == []


def test_a_lost_lock_stops_sending_until_it_is_free_again(beats: Any, server: fakeredis.FakeServer) -> None:
    (first, second), sent = beats
    first.tick()
    client = fakeredis.FakeRedis(server=server)
    client.set(LOCK, "someone-else", px=60_000)
    sent[0].clear()

    assert first.tick() == 0.0 and first.lock is None
    _later()
    assert first.tick() == first.max_interval and second.tick() == second.max_interval
    assert sent == [[], []]

    client.delete(LOCK)
    _later()
    first.tick()
    assert first.lock is not None and "often" in sent[0]


def test_a_flushed_redis_gets_lock_and_schedule_back(beats: Any, server: fakeredis.FakeServer) -> None:
    (first, _), sent = beats
    first.tick()
    fakeredis.FakeRedis(server=server).flushall()
    sent[0].clear()

    first.tick()  # notices the lost lock
    _later()
    first.tick()  # takes it again and writes the schedule again (each entry due one interval later)
    _later()
    first.tick()

    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    assert client.get(LOCK) is not None and client.exists("t:redbeat:statics")
    assert "often" in sent[0]


def test_a_redis_error_in_a_tick_is_retried_not_raised(beats: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (first, _), _sent = beats
    first.tick()

    def down(*_: Any, **__: Any) -> None:
        raise redis.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(first.lock, "extend", down)
    assert first.tick() == RETRY_SECONDS


def test_on_a_cluster_beat_keeps_its_schedule_on_the_brokers_single_redis() -> None:
    broker = "redis://127.0.0.1:6379/3"
    cluster = Settings(key_prefix="t", redis_url="redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
                       celery_broker_url=broker)
    assert celery_config(cluster)["redbeat_redis_url"] == broker
    assert celery_config(Settings(key_prefix="t", redis_url="redis://h:6379/0"))["redbeat_redis_url"] == \
        "redis://h:6379/0"


def test_beat_refuses_to_start_on_a_cluster_whose_broker_is_not_redis() -> None:
    app = Celery("t")
    app.conf.update(celery_config(Settings(key_prefix="t", redis_url="redis+cluster://127.0.0.1:7000",
                                           celery_broker_url="amqp://guest@127.0.0.1//")))
    with pytest.raises(ValueError, match="CELERY_BROKER_URL must be a redis://"):
        ResilientScheduler(app=app, lazy=True).setup_schedule()
