"""Idempotency-Key claims: only the claimer runs, duplicates wait or get 409, other bodies 422, transient
answers release the claim, and a crashed claimer's lease expires."""

from __future__ import annotations

import threading
import time
from typing import Any

import fakeredis
import pytest
import redis

from api.idempotency import IdempotencyStore
from inventory.keys import KeySpace
from tests.api.conftest import SF, error_of
from tests.helpers import make_product


def _hold(inv: Any, user: str = "alice") -> str:
    return inv.reservations.reserve(user, {"HOT": 1}).id


def _checkout(client: Any, rid: str, key: str, user: str = "alice") -> Any:
    return client.post(f"/v1/reservations/{rid}/checkout", json={"user_id": user},
                       headers={**SF, "Idempotency-Key": key})


def _store(app: Any, **options: Any) -> IdempotencyStore:
    """Give the app a store with these lease/wait settings and return it."""
    st = app.extensions["flashstock"]
    st.idempotency = IdempotencyStore(st.inventory.redis, st.inventory.keys,
                                      st.settings.idempotency_ttl_seconds, **options)
    return st.idempotency


def _fingerprint_of(app: Any, rid: str, key: str, user: str = "alice") -> tuple[str, str]:
    """The record key and fingerprint the checkout view uses for this request (it is not run)."""
    from flask import Response

    store = app.extensions["flashstock"].idempotency
    seen: dict[str, str] = {}

    def record_only(record_key: str, print_: str, produce: Any, **_: Any) -> Response:
        seen.update(record_key=record_key, print_=print_)
        return Response("{}", status=200, mimetype="application/json")

    store.run, original = record_only, store.run  # type: ignore[method-assign]
    try:
        with app.test_client() as probe:
            _checkout(probe, rid, key, user)
    finally:
        store.run = original  # type: ignore[method-assign]
    return seen["record_key"], seen["print_"]


def test_a_concurrent_duplicate_waits_for_the_claimers_answer_and_only_the_claimer_runs(app, api_inv, monkeypatch):
    make_product(api_inv)
    rid = _hold(api_inv)
    _store(app, wait_seconds=30)
    started, release, runs = threading.Event(), threading.Event(), []
    real = api_inv.reservations.checkout

    def slow_checkout(*args: Any, **kwargs: Any) -> Any:
        runs.append(1)
        started.set()
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(api_inv.reservations, "checkout", slow_checkout)
    answers: dict[str, Any] = {}

    def send(name: str) -> None:
        with app.test_client() as c:
            answers[name] = _checkout(c, rid, "dup-1")

    first = threading.Thread(target=send, args=("first",))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=send, args=("second",))
    second.start()
    with app.test_client() as c:  # a different body is refused at once, while the first still runs
        other = api_inv.reservations.reserve("alice", {"HOT": 1}).id
        reused = _checkout(c, other, "dup-1")
    assert reused.status_code == 422 and error_of(reused)["code"] == "idempotency_key_reused"
    release.set()
    first.join(10)
    second.join(10)
    assert len(runs) == 1
    assert answers["first"].status_code == answers["second"].status_code == 202
    assert answers["second"].get_data() == answers["first"].get_data()
    assert answers["second"].headers["Idempotent-Replayed"] == "true"


def test_a_duplicate_past_the_wait_gets_409_in_progress_with_retry_after(app, client, api_inv):
    make_product(api_inv)
    rid = _hold(api_inv)
    store = _store(app, wait_seconds=0)
    record_key, print_ = _fingerprint_of(app, rid, "busy-1")
    assert isinstance(store.claim(record_key, print_), str)  # another process is running it

    busy = _checkout(client, rid, "busy-1")
    assert busy.status_code == 409 and error_of(busy)["code"] == "idempotency_request_in_progress"
    assert busy.headers["Retry-After"] == "1"
    other = _checkout(client, _hold(api_inv), "busy-1")
    assert other.status_code == 422 and error_of(other)["code"] == "idempotency_key_reused"
    assert api_inv.reservations.get(rid).status.value == "held"


def test_a_crashed_claimers_lease_expires_and_the_retry_runs(app, client, api_inv, checkout_hook):
    make_product(api_inv)
    rid = _hold(api_inv)
    store = _store(app, wait_seconds=0, lease_seconds=0.3)
    record_key, print_ = _fingerprint_of(app, rid, "crash-1")
    assert isinstance(store.claim(record_key, print_), str)  # claimed, then the process died
    assert _checkout(client, rid, "crash-1").status_code == 409

    deadline = time.monotonic() + 10
    while api_inv.redis.pttl(record_key) != -2:  # the lease is Redis's TTL: wait for Redis to drop it
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.05)
    retry = _checkout(client, rid, "crash-1")
    assert retry.status_code == 202 and "Idempotent-Replayed" not in retry.headers
    assert checkout_hook.orders == [retry.get_json()["data"]["order_id"]]
    assert _checkout(client, rid, "crash-1").get_data() == retry.get_data()


def test_a_5xx_releases_the_claim_so_the_retry_runs(app, client, api_inv, monkeypatch):
    make_product(api_inv)
    rid = _hold(api_inv)
    real = api_inv.reservations.checkout

    def down(*_: Any, **__: Any) -> Any:
        raise redis.exceptions.ConnectionError("connection reset")

    monkeypatch.setattr(api_inv.reservations, "checkout", down)
    assert _checkout(client, rid, "blip-1").status_code == 503
    assert api_inv.redis.keys(api_inv.keys.scoped("idem:*")) == []
    monkeypatch.setattr(api_inv.reservations, "checkout", real)
    assert _checkout(client, rid, "blip-1").status_code == 202


def test_a_domain_error_is_final_and_stored(client, api_inv):
    make_product(api_inv)
    rid = _hold(api_inv)
    api_inv.reservations.release(rid, user_id="alice")
    first = _checkout(client, rid, "closed-1")
    assert first.status_code == 409 and error_of(first)["code"] == "reservation_closed"
    again = _checkout(client, rid, "closed-1")
    assert again.get_data() == first.get_data() and again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("backend", ["fakeredis", "redis-server"])
def test_a_claimer_whose_lease_ran_out_neither_stores_nor_releases(backend, real_redis, key_prefix):
    from flask import Response

    client = fakeredis.FakeRedis() if backend == "fakeredis" else real_redis
    store = IdempotencyStore(client, KeySpace(key_prefix), 60, lease_seconds=5)
    record = store.record_key("user:alice", "late-1")
    late = store.claim(record, "fp")
    client.delete(record)  # its lease ran out ...
    current = store.claim(record, "fp")  # ... and a retry claimed the key
    assert isinstance(late, str) and isinstance(current, str) and late != current
    assert store.settle(record, late, "fp", Response("{}", status=201)) is False
    assert store.settle(record, late, "fp", None) is False
    assert client.get(record).decode() == current
    assert store.settle(record, current, "fp", Response('{"ok":1}', status=201)) is True
    assert store.claim(record, "fp") == {"fp": "fp", "status": 201, "body": '{"ok":1}'}
    assert 0 < client.pttl(record) <= 60_000


def test_a_redis_failure_after_the_run_still_answers_and_the_lease_frees_the_key(app, client, api_inv, monkeypatch):
    make_product(api_inv)
    rid = _hold(api_inv)
    store = _store(app, wait_seconds=0, lease_seconds=0.3)

    def down(*_: Any, **__: Any) -> Any:
        raise redis.exceptions.ConnectionError("connection reset")

    monkeypatch.setattr(store, "settle", down)
    first = _checkout(client, rid, "settle-1")
    assert first.status_code == 202  # the checkout happened: its answer is not turned into a 503
    monkeypatch.undo()
    deadline = time.monotonic() + 10
    while _checkout(client, rid, "settle-1").status_code == 409:  # in progress until the lease ends
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.05)
    again = _checkout(client, rid, "settle-1")
    assert again.status_code == 202 and again.get_json()["data"] == first.get_json()["data"]
