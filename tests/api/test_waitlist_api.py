"""HTTP: waitlists of sold-out products, from sold_out to a paid order; bad input changes nothing."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import ADMIN, SF, bearer, error_of, until_units_heard
from tests.api.test_orders_payments import pay
from tests.helpers import make_product, stock


def _reserve(client: Any, user: str, qty: int = 1) -> Any:
    return client.post("/v1/reservations", json={"user_id": user, "items": [{"sku": "HOT", "qty": qty}]},
                       headers=SF)


def _join(client: Any, user: str, qty: int = 1) -> Any:
    return client.post("/v1/products/HOT/waitlist", json={"user_id": user, "qty": qty}, headers=SF)


def test_a_sold_out_answer_leads_to_the_waitlist_and_an_offer_to_a_paid_order(client, api_inv, clock):
    make_product(api_inv, stock=1)
    first = _reserve(client, "alice").get_json()["data"]["id"]
    refused = _reserve(client, "bob")
    assert refused.status_code == 409
    assert error_of(refused)["details"] == {"sku": "HOT", "available": 0, "requested": 1, "waitlist_length": 0,
                                            "waitlist_open": True}
    joined = _join(client, "bob")
    assert joined.status_code == 201
    entry = joined.get_json()["data"]
    assert (entry["status"], entry["position"], entry["length"], entry["units"]) == ("waiting", 1, 1, 1)
    assert _join(client, "bob").status_code == 200  # joining again answers the same entry
    scraped = client.get("/metrics").get_data(as_text=True)
    assert 'flashstock_waitlist_waiting{sku="HOT"} 1.0' in scraped
    assert 'flashstock_waitlist_requests_total{action="join",outcome="ok"}' in scraped
    client.delete(f"/v1/reservations/{first}?user_id=alice", headers=SF)
    assert _reserve(client, "bot").status_code == 409  # the returned unit is bob's first
    read = client.get("/v1/products/HOT/waitlist?user_id=bob", headers=SF).get_json()["data"]
    assert read["status"] == "offered" and read["position"] == 0
    claimed = client.post("/v1/products/HOT/waitlist/claim", json={"user_id": "bob"}, headers=SF)
    assert claimed.status_code == 201 and claimed.get_json()["data"]["status"] == "held"
    rid = claimed.get_json()["data"]["id"]
    order = client.post(f"/v1/reservations/{rid}/checkout", json={"user_id": "bob"}, headers=SF).get_json()["data"]
    assert pay(client, clock, {"event_id": "e", "order_id": order["order_id"], "status": "paid"}).status_code == 200
    level = stock(api_inv)
    assert (level.sold, level.held, level.available) == (1, 0, 0)
    summary = client.get("/v1/admin/products/HOT/waitlist", headers=ADMIN)
    assert summary.status_code == 200 and summary.get_json()["data"]["waiting"] == 0


def test_leaving_and_the_refusals_are_clear(client, api_inv):
    make_product(api_inv, stock=1, limit=1)
    assert _join(client, "early").status_code == 409 and error_of(_join(client, "early"))["code"] == "not_sold_out"
    _reserve(client, "alice")
    assert error_of(_join(client, "bob", 2))["code"] == "limit_exceeded"
    _join(client, "bob")
    left = client.delete("/v1/products/HOT/waitlist?user_id=bob", headers=SF)
    assert left.status_code == 200 and left.get_json()["data"]["left"] == "waiting"
    gone = client.get("/v1/products/HOT/waitlist?user_id=bob", headers=SF)
    assert gone.status_code == 404 and error_of(gone)["code"] == "waitlist_entry_not_found"
    no_offer = client.post("/v1/products/HOT/waitlist/claim", json={"user_id": "bob"}, headers=SF)
    assert no_offer.status_code == 404
    assert client.post("/v1/products/NOPE/waitlist", json={"user_id": "bob", "qty": 1},
                       headers=SF).status_code == 404


def test_bad_waitlist_requests_get_clear_errors_and_change_nothing(client, api_inv):
    make_product(api_inv, stock=1)
    _reserve(client, "alice")
    for body in ({"user_id": "bob"}, {"user_id": "bob", "qty": 0}, {"user_id": "bob", "qty": "1"},
                 {"user_id": "bob", "qty": 1, "extra": True}, {"user_id": "b|b", "qty": 1}):
        response = client.post("/v1/products/HOT/waitlist", json=body, headers=SF)
        assert response.status_code == 422 and error_of(response)["code"] == "invalid_request", body
    bad_sku = client.post("/v1/products/bad%20sku/waitlist", json={"user_id": "bob", "qty": 1}, headers=SF)
    assert bad_sku.status_code in (404, 422)
    other = client.get("/v1/products/HOT/waitlist?user_id=bob", headers=bearer("mallory"))
    assert other.status_code == 403
    assert client.post("/v1/products/HOT/waitlist", json={"qty": 1}, headers={}).status_code == 401
    assert client.get("/v1/admin/products/HOT/waitlist", headers=SF).status_code == 403
    assert api_inv.waitlists.summary("HOT").waiting == 0


def test_a_split_products_waitlist_works_as_any_other(client, api_inv, clock):
    make_product(api_inv, stock=4, limit=1)
    assert client.put("/v1/admin/products/HOT", json={"buckets": 4}, headers=ADMIN).status_code == 200
    holds = [_reserve(client, f"s{n}").get_json()["data"]["id"] for n in range(4)]
    assert error_of(_join(client, "s0"))["code"] == "limit_exceeded"  # counted in s0's quota, any bucket
    assert _join(client, "bob").status_code == 201
    for n, rid in enumerate(holds[:2]):
        client.delete(f"/v1/reservations/{rid}?user_id=s{n}", headers=SF)
    refused = _reserve(client, "bot")
    assert refused.status_code == 409 and error_of(refused)["details"]["waitlist_length"] == 1
    read = client.get("/v1/products/HOT/waitlist?user_id=bob", headers=SF).get_json()["data"]
    assert (read["status"], read["units"]) == ("offered", 1)
    claimed = client.post("/v1/products/HOT/waitlist/claim", json={"user_id": "bob"}, headers=SF).get_json()["data"]
    assert [(line["sku"], line["qty"]) for line in claimed["items"]] == [("HOT", 1)]  # no bucket, no quota
    order = client.post(f"/v1/reservations/{claimed['id']}/checkout", json={"user_id": "bob"},
                        headers=SF).get_json()["data"]
    assert pay(client, clock, {"event_id": "e", "order_id": order["order_id"], "status": "paid"}).status_code == 200
    api_inv.sweep()  # nobody waits now: the second unit back is on sale again
    level = stock(api_inv)
    assert (level.total, level.sold, level.held, level.available) == (4, 1, 2, 1)
    until_units_heard(api_inv, "HOT")
    assert _reserve(client, "bot").status_code == 201
