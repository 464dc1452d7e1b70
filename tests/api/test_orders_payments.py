"""Orders and the signed payment webhook: applied once, replays and tampering refused."""

from __future__ import annotations

import json
from typing import Any

from tests.api.conftest import SF, bearer, error_of, signed
from tests.helpers import make_product, stock


def checked_out(client: Any, user: str = "alice", qty: int = 1) -> dict[str, Any]:
    rid = client.post("/v1/reservations", json={"user_id": user, "items": [{"sku": "HOT", "qty": qty}]},
                      headers=SF).get_json()["data"]["id"]
    return client.post(f"/v1/reservations/{rid}/checkout", json={"user_id": user},
                       headers=SF).get_json()["data"]


def pay(client: Any, clock: Any, body: dict[str, Any], **kwargs: Any) -> Any:
    raw, headers = signed(body, clock.now_ms(), **kwargs)
    return client.post("/v1/payments/webhook", data=raw, headers=headers)


def test_order_reads_pending_payment_before_it_reaches_the_database(client, api_inv):
    make_product(api_inv)
    order = checked_out(client)
    response = client.get(f"/v1/orders/{order['order_id']}?user_id=alice", headers=SF)
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["status"] == "pending_payment" and data["total"] == 1500 and data["id"] == order["order_id"]


def test_orders_list_is_per_user_newest_first(client, api_inv):
    make_product(api_inv, stock=5)
    first, second = checked_out(client), checked_out(client)
    checked_out(client, user="bob")
    response = client.get("/v1/orders?user_id=alice", headers=SF)
    assert [o["id"] for o in response.get_json()["data"]] == [second["order_id"], first["order_id"]]
    assert [o["id"] for o in client.get("/v1/orders", headers=bearer("carol")).get_json()["data"]] == []


def test_another_users_order_is_404(client, api_inv):
    make_product(api_inv)
    order = checked_out(client)
    response = client.get(f"/v1/orders/{order['order_id']}?user_id=mallory", headers=SF)
    assert response.status_code == 404 and error_of(response)["code"] == "order_not_found"
    assert client.get(f"/v1/orders/{order['order_id']}", headers=bearer("mallory")).status_code == 404
    assert client.get("/v1/orders/o_nothing?user_id=alice", headers=SF).status_code == 404


def test_paid_webhook_marks_the_order_paid(client, api_inv, clock):
    make_product(api_inv)
    order = checked_out(client)
    response = pay(client, clock, {"event_id": "evt_1", "order_id": order["order_id"], "status": "paid"})
    assert response.status_code == 200
    assert response.get_json()["data"] == {"event_id": "evt_1", "reservation_id": order["reservation_id"],
                                           "order_id": order["order_id"], "status": "paid", "extended_until": None}
    assert client.get(f"/v1/orders/{order['order_id']}?user_id=alice",
                      headers=SF).get_json()["data"]["status"] == "paid"


def test_failed_payment_returns_the_stock(client, api_inv, clock):
    make_product(api_inv, stock=3)
    order = checked_out(client, qty=2)
    response = pay(client, clock, {"event_id": "evt_f", "order_id": order["order_id"], "status": "failed"})
    assert response.get_json()["data"]["status"] == "payment_failed"
    level = stock(api_inv)
    assert (level.available, level.sold) == (3, 0)


def test_same_event_again_returns_the_original_response_and_applies_once(client, api_inv, clock):
    make_product(api_inv, stock=3)
    order = checked_out(client, qty=2)
    body = {"event_id": "evt_2", "order_id": order["order_id"], "status": "failed"}
    first = pay(client, clock, body, msg_id="msg_a")
    clock.advance(5)
    again = pay(client, clock, body, msg_id="msg_b")
    assert again.status_code == 200 and again.get_data() == first.get_data()
    assert stock(api_inv).available == 3


def test_same_event_id_with_another_body_is_409(client, api_inv, clock):
    make_product(api_inv)
    order = checked_out(client)
    assert pay(client, clock, {"event_id": "evt_3", "order_id": order["order_id"], "status": "paid"}).status_code == 200
    response = pay(client, clock, {"event_id": "evt_3", "order_id": order["order_id"], "status": "failed"})
    assert response.status_code == 409 and error_of(response)["code"] == "event_id_reused"
    assert client.get(f"/v1/orders/{order['order_id']}?user_id=alice",
                      headers=SF).get_json()["data"]["status"] == "paid"


def test_payment_for_an_expired_hold_requires_a_refund(client, api_inv, clock):
    make_product(api_inv, stock=1)
    rid = client.post("/v1/reservations", json={"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}],
                                                "ttl_seconds": 10}, headers=SF).get_json()["data"]["id"]
    clock.advance(11)
    response = pay(client, clock, {"event_id": "evt_late", "reservation_id": rid, "status": "paid"})
    assert response.status_code == 200 and response.get_json()["data"]["status"] == "refund_required"
    assert stock(api_inv).sold == 0


def test_webhook_body_must_be_valid(client, clock):
    for body in ({"event_id": "e", "status": "paid"},
                 {"event_id": "e", "order_id": "o_1", "reservation_id": "r_1", "status": "paid"},
                 {"event_id": "e", "order_id": "o_1", "status": "refunded"}):
        response = pay(client, clock, body)
        assert response.status_code == 422 and error_of(response)["code"] == "invalid_request", body


def test_webhook_with_a_bad_signature_is_401_and_changes_nothing(client, api_inv, clock):
    make_product(api_inv)
    order = checked_out(client)
    raw, headers = signed({"event_id": "evt_4", "order_id": order["order_id"], "status": "failed"}, clock.now_ms())
    tampered = raw.replace(b"failed", b"paid  ")
    response = client.post("/v1/payments/webhook", data=tampered, headers=headers)
    assert response.status_code == 401
    assert error_of(response) == {"code": "invalid_signature", "message": "The webhook signature is not valid.",
                                  "details": {"reason": "mismatch"}}
    forged = client.post("/v1/payments/webhook", data=raw,
                         headers=signed(json.loads(raw), clock.now_ms(), secret=b"wrong-secret-0123456789")[1])
    assert forged.status_code == 401
    missing = client.post("/v1/payments/webhook", data=raw, headers={"Content-Type": "application/json"})
    assert missing.status_code == 401 and error_of(missing)["details"]["reason"] == "missing_headers"
    assert stock(api_inv).sold == 1


def test_webhook_outside_the_clock_tolerance_is_refused(client, api_inv, clock):
    make_product(api_inv)
    order = checked_out(client)
    body = {"event_id": "evt_5", "order_id": order["order_id"], "status": "paid"}
    tolerance = api_inv.settings.webhook_tolerance_seconds
    for skew in (-(tolerance + 1), tolerance + 1):
        response = pay(client, clock, body, skew_seconds=skew)
        assert response.status_code == 401
        assert error_of(response)["details"]["reason"] == "timestamp_out_of_tolerance"
    # A captured, correctly signed request replayed after the window is refused too.
    raw, headers = signed(body, clock.now_ms())
    clock.advance(tolerance + 1)
    assert client.post("/v1/payments/webhook", data=raw, headers=headers).status_code == 401
    assert pay(client, clock, body, skew_seconds=-(tolerance - 1)).status_code == 200


def test_webhook_accepts_either_secret_while_rotating(app, client, api_inv, clock):
    from api.webhooks import WebhookVerifier

    app.extensions["flashstock"].webhooks = WebhookVerifier(
        [api_inv.settings.webhook_secret, "new-raw-secret-0123456789"], 300)
    make_product(api_inv, stock=2)
    old = checked_out(client)
    new = checked_out(client)
    assert pay(client, clock, {"event_id": "e1", "order_id": old["order_id"], "status": "paid"}).status_code == 200
    assert pay(client, clock, {"event_id": "e2", "order_id": new["order_id"], "status": "paid"},
               secret=b"new-raw-secret-0123456789").status_code == 200
