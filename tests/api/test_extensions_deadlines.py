"""HTTP: extending holds and payment deadlines, requires_action webhooks, expired payments."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import SF, bearer, error_of
from tests.api.test_orders_payments import checked_out, pay
from tests.helpers import make_product, stock


def _hold(client: Any, user: str = "alice", ttl: int = 60) -> str:
    return client.post("/v1/reservations", json={"user_id": user, "items": [{"sku": "HOT", "qty": 1}],
                                                 "ttl_seconds": ttl}, headers=SF).get_json()["data"]["id"]


def _extend(client: Any, rid: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post(f"/v1/reservations/{rid}/extend", json=body, headers={**SF, **headers})


def test_extending_a_hold_moves_its_expiry_and_shows_in_the_reservation(client, api_inv, clock):
    make_product(api_inv)
    rid = _hold(client)
    response = _extend(client, rid, {"user_id": "alice", "seconds": 300})
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["kind"] == "hold" and data["extensions"] == 1 and data["reservation_id"] == rid
    read = client.get(f"/v1/reservations/{rid}?user_id=alice", headers=SF).get_json()["data"]
    assert read["expires_at"] == data["until"] and read["extensions"] == 1
    clock.advance(120)
    assert client.get(f"/v1/reservations/{rid}?user_id=alice", headers=SF).get_json()["data"]["status"] == "held"


def test_an_extension_retried_with_its_idempotency_key_is_the_same_extension(client, api_inv, clock):
    make_product(api_inv)
    rid = _hold(client)
    first = _extend(client, rid, {"user_id": "alice", "seconds": 300}, **{"Idempotency-Key": "k1"})
    clock.advance(5)
    again = _extend(client, rid, {"user_id": "alice", "seconds": 300}, **{"Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.get_json() == first.get_json()
    read = client.get(f"/v1/reservations/{rid}?user_id=alice", headers=SF).get_json()["data"]
    assert read["extensions"] == 1


def test_extending_past_the_cap_or_a_closed_reservation_is_409(client, api_inv, clock):
    make_product(api_inv)
    rid = _hold(client)
    too_far = _extend(client, rid, {"user_id": "alice", "seconds": 3601})  # MAX_HOLD_LIFETIME_SECONDS = 3600
    assert too_far.status_code == 409 and error_of(too_far)["code"] == "extension_limit"
    assert "max_until_ms" in error_of(too_far)["details"]
    client.delete(f"/v1/reservations/{rid}?user_id=alice", headers=SF)
    closed = _extend(client, rid, {"user_id": "alice", "seconds": 60})
    assert closed.status_code == 409 and error_of(closed)["code"] == "reservation_closed"
    expired = _hold(client, ttl=5)
    clock.advance(5)
    late = _extend(client, expired, {"user_id": "alice", "seconds": 60})
    assert late.status_code == 409 and error_of(late)["code"] == "reservation_expired"


def test_bad_extension_requests_get_clear_errors_and_change_nothing(client, api_inv):
    make_product(api_inv)
    rid = _hold(client)
    before = client.get(f"/v1/reservations/{rid}?user_id=alice", headers=SF).get_json()["data"]
    for body in ({"user_id": "alice"}, {"user_id": "alice", "seconds": 0}, {"user_id": "alice", "seconds": "60"},
                 {"user_id": "alice", "seconds": 86_401}, {"user_id": "alice", "seconds": 60, "extra": 1}):
        response = _extend(client, rid, body)
        assert response.status_code == 422 and error_of(response)["code"] == "invalid_request", body
    other = client.post(f"/v1/reservations/{rid}/extend", json={"seconds": 60}, headers=bearer("mallory"))
    assert other.status_code == 404 and error_of(other)["code"] == "reservation_not_found"
    missing = _extend(client, "r_nothing", {"user_id": "alice", "seconds": 60})
    assert missing.status_code == 404
    bad_key = _extend(client, rid, {"user_id": "alice", "seconds": 60}, **{"Idempotency-Key": "\u00e9"})
    assert bad_key.status_code in (400, 422)
    assert client.get(f"/v1/reservations/{rid}?user_id=alice", headers=SF).get_json()["data"] == before


def test_an_order_shows_its_payment_deadline_and_expires_unpaid(client, api_inv, clock):
    make_product(api_inv, stock=3)
    order = checked_out(client, qty=2)
    assert order["payment_due_at"] is not None and order["extensions"] == 0
    extended = _extend(client, order["reservation_id"], {"user_id": "alice", "seconds": 1200})
    assert extended.status_code == 200 and extended.get_json()["data"]["kind"] == "payment"
    clock.advance(1200)
    api_inv.reservations.expire_due()
    read = client.get(f"/v1/orders/{order['order_id']}?user_id=alice", headers=SF).get_json()["data"]
    assert read["status"] == "payment_expired" and stock(api_inv).available == 3
    late = pay(client, clock, {"event_id": "evt_late", "order_id": order["order_id"], "status": "paid"})
    assert late.status_code == 200 and late.get_json()["data"]["status"] == "refund_required"
    assert stock(api_inv).sold == 0


def test_requires_action_webhook_extends_the_hold(client, api_inv, clock):
    make_product(api_inv)
    rid = _hold(client, ttl=30)
    response = pay(client, clock, {"event_id": "evt_3ds", "reservation_id": rid, "status": "requires_action"})
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["status"] == "held" and data["extended_until"] is not None
    clock.advance(300)
    assert client.get(f"/v1/reservations/{rid}?user_id=alice", headers=SF).get_json()["data"]["status"] == "held"
    replay = pay(client, clock, {"event_id": "evt_3ds", "reservation_id": rid, "status": "requires_action"})
    assert replay.status_code == 200 and replay.get_json()["data"]["extended_until"] == data["extended_until"]
