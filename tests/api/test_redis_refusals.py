"""A Redis that is up but refuses writes for a while (out of memory, turned replica, too few replicas, busy
with a long script) answers 503 `unavailable` with Retry-After and the Redis error code, and holds nothing."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import pytest
import redis

from api import create_app
from inventory import Settings
from tests.api.conftest import SF, error_of
from tests.celery_workers import wait_for
from tests.helpers import make_product
from tests.own_redis import OwnRedis, free_port

BODY = {"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}]}


def _out_of_memory(server: OwnRedis) -> Callable[[], None]:
    server.client.config_set("maxmemory", 1)  # noeviction (the default): every write refused
    return lambda: server.client.config_set("maxmemory", 0)


def _turned_replica(server: OwnRedis) -> Callable[[], None]:
    server.client.replicaof("127.0.0.1", free_port())  # a master that never answers: the data stays
    return lambda: server.client.replicaof("NO", "ONE")


def _too_few_replicas(server: OwnRedis) -> Callable[[], None]:
    server.client.config_set("min-replicas-to-write", 1)
    return lambda: server.client.config_set("min-replicas-to-write", 0)


def _busy_with_a_long_script(server: OwnRedis) -> Callable[[], None]:
    server.client.config_set("busy-reply-threshold", 50)
    other = redis.Redis(port=server.port, socket_timeout=30)
    runner = threading.Thread(target=lambda: _ignore(lambda: other.eval("while true do end", 0)), daemon=True)
    runner.start()
    wait_for(lambda: _busy(server), timeout=10)

    def end() -> None:  # SCRIPT KILL stops the script at its next check: wait until Redis answers again
        wait_for(lambda: (_ignore(server.client.script_kill) or True) and not _busy(server), timeout=10)
        runner.join(10)
        server.client.config_set("busy-reply-threshold", 5000)
    return end


def _busy(server: OwnRedis) -> bool:
    try:
        server.client.get("x")
        return False
    except redis.ResponseError as error:
        return str(error).startswith("BUSY")


def _ignore(call: Callable[[], Any]) -> bool:
    try:
        call()
        return True
    except redis.RedisError:
        return False


@pytest.fixture
def server(own_redis: OwnRedis) -> Iterator[OwnRedis]:
    yield own_redis


@pytest.mark.parametrize("refusal, code", [(_out_of_memory, "OOM"), (_turned_replica, "READONLY"),
                                           (_too_few_replicas, "NOREPLICAS"), (_busy_with_a_long_script, "BUSY")],
                         ids=["oom", "readonly", "noreplicas", "busy"])
def test_a_redis_refusing_writes_is_503_with_its_code_and_holds_nothing(
        api_settings: Settings, server: OwnRedis, refusal: Callable[[OwnRedis], Callable[[], None]],
        code: str) -> None:
    app = create_app(api_settings.with_overrides(redis_url=server.url), on_checkout=None)
    inv = app.extensions["flashstock"].inventory
    make_product(inv, "HOT", stock=3)
    client = app.test_client()

    end = refusal(server)
    try:
        for attempt in range(2):  # the hot path and, with an Idempotency-Key, the Flask view
            headers = {**SF, "Idempotency-Key": "k-1"} if attempt else SF
            response = client.post("/v1/reservations", json=BODY, headers=headers)
            assert response.status_code == 503, response.get_data(as_text=True)
            assert error_of(response)["code"] == "unavailable"
            assert error_of(response)["details"]["reason"] == code
            assert response.headers["Retry-After"]
    finally:
        end()

    product = inv.catalog.get("HOT")
    assert (product.stock.available, product.stock.held) == (3, 0)  # nothing was held
    assert client.post("/v1/reservations", json=BODY, headers=SF).status_code == 201  # and it serves again
    retried = client.post("/v1/reservations", json=BODY, headers={**SF, "Idempotency-Key": "k-1"})
    assert retried.status_code == 201, retried.get_data(as_text=True)  # the refused keyed request, retried
