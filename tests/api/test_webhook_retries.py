"""Payment webhooks: only applied payments are stored under the event id; every other answer is one the
provider retries, and the retry applies the payment once the order's record is back."""

from __future__ import annotations

from typing import Any

import redis

from tests.api.conftest import SF, error_of
from tests.api.test_orders_payments import checked_out, pay
from tests.helpers import make_product, stock


def _stored_webhook_records(inv: Any) -> list[bytes]:
    return inv.redis.keys(inv.keys.scoped("whk:*"))


def _healthy(inv: Any) -> None:
    """The epoch marker recovery writes once Redis state is initialised or rebuilt."""
    for part in inv.keys.parts:  # every partition's marker: one on a single node, 16 on a cluster
        inv.redis.set(part.epoch, "test-epoch")


def _take_record_away(inv: Any, order: dict[str, Any]) -> tuple[str, bytes]:
    """Drop an order's Redis record (as a Redis that lost its data has), keeping a copy to put back."""
    key = inv.keys.reservation(order["order_id"][2:])
    saved = inv.redis.dump(key)
    inv.redis.delete(key)
    return key, saved


def _status(client: Any, order: dict[str, Any]) -> str:
    return client.get(f"/v1/orders/{order['order_id']}?user_id=alice", headers=SF).get_json()["data"]["status"]


def test_paid_while_redis_is_being_rebuilt_is_503_not_stored_and_the_retry_applies(client, api_inv, clock):
    make_product(api_inv)
    order = checked_out(client)
    key, saved = _take_record_away(api_inv, order)  # Redis lost its data: no epoch marker, no record
    body = {"event_id": "evt_rebuild", "order_id": order["order_id"], "status": "paid"}

    during = pay(client, clock, body)
    assert during.status_code == 503 and error_of(during)["code"] == "unavailable"
    assert error_of(during)["details"] == {"reason": "recovering"} and during.headers["Retry-After"] == "1"
    assert _stored_webhook_records(api_inv) == []

    api_inv.redis.restore(key, 0, saved)  # the rebuild restores the order record and the marker
    _healthy(api_inv)
    clock.advance(30)
    retry = pay(client, clock, body, msg_id="msg_retry")
    assert retry.status_code == 200 and retry.get_json()["data"]["status"] == "paid"
    assert _status(client, order) == "paid" and stock(api_inv).sold == 1
    assert pay(client, clock, body, msg_id="msg_again").get_data() == retry.get_data()


def test_paid_for_a_missing_record_on_a_healthy_redis_is_404_not_stored(client, api_inv, clock):
    make_product(api_inv)
    _healthy(api_inv)
    order = checked_out(client)
    key, saved = _take_record_away(api_inv, order)
    body = {"event_id": "evt_missing", "order_id": order["order_id"], "status": "paid"}

    missing = pay(client, clock, body)
    assert missing.status_code == 404 and error_of(missing)["code"] == "order_not_found"
    assert _stored_webhook_records(api_inv) == []

    api_inv.redis.restore(key, 0, saved)
    retry = pay(client, clock, body, msg_id="msg_retry")
    assert retry.status_code == 200 and retry.get_json()["data"]["status"] == "paid"
    assert _status(client, order) == "paid"


def test_webhook_for_an_unknown_order_is_404_on_a_healthy_redis(client, api_inv, clock):
    _healthy(api_inv)
    response = pay(client, clock, {"event_id": "evt_x", "order_id": "o_0123456789abcdef", "status": "paid"})
    assert response.status_code == 404 and error_of(response)["code"] == "order_not_found"
    malformed = pay(client, clock, {"event_id": "evt_y", "order_id": "o_nothing", "status": "paid"})
    assert malformed.status_code == 404 and _stored_webhook_records(api_inv) == []


def test_a_webhook_that_hit_a_redis_failure_is_not_stored_and_the_retry_applies(client, api_inv, clock,
                                                                                 monkeypatch):
    make_product(api_inv)
    order = checked_out(client)
    body = {"event_id": "evt_blip", "order_id": order["order_id"], "status": "paid"}
    real = api_inv.reservations.record_payment

    def down(**_: Any) -> Any:
        raise redis.exceptions.TimeoutError("read timed out")

    monkeypatch.setattr(api_inv.reservations, "record_payment", down)
    failed = pay(client, clock, body)
    assert failed.status_code == 503 and _stored_webhook_records(api_inv) == []
    monkeypatch.setattr(api_inv.reservations, "record_payment", real)
    assert pay(client, clock, body, msg_id="msg_retry").get_json()["data"]["status"] == "paid"


def test_the_records_own_event_log_answers_409_event_id_reused_once_the_stored_response_is_gone(
        client, api_inv, clock):
    make_product(api_inv)
    order = checked_out(client)
    assert pay(client, clock, {"event_id": "evt_r", "order_id": order["order_id"], "status": "paid"}).status_code == 200
    api_inv.redis.delete(*_stored_webhook_records(api_inv))  # past the 24 h TTL; the record keeps ev:evt_r
    other = pay(client, clock, {"event_id": "evt_r", "order_id": order["order_id"], "status": "failed"})
    assert other.status_code == 409 and error_of(other)["code"] == "event_id_reused"
    assert error_of(other)["details"] == {"event_id": "evt_r"}
    assert _status(client, order) == "paid"
    same = pay(client, clock, {"event_id": "evt_r", "order_id": order["order_id"], "status": "paid"})
    assert same.status_code == 200 and same.get_json()["data"]["status"] == "paid"
