"""Admin endpoints: products, stock, holds per SKU, reconciliation."""

from __future__ import annotations

from inventory import Inventory
from tests.api.conftest import ADMIN, SF, error_of
from tests.helpers import assert_invariant, make_product, stock


def test_put_creates_a_product_with_stock_and_sale_settings(client, api_inv):
    response = client.put("/v1/admin/products/NEW-1", headers=ADMIN, json={
        "name": "New thing", "price": 2599, "currency": "EUR", "stock": 40, "per_user_limit": 2,
        "sale_starts_at": "2027-01-01T10:00:00Z", "sale_ends_at": None, "paused": False})
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert (data["name"], data["price"], data["currency"], data["per_user_limit"]) == ("New thing", 2599, "EUR", 2)
    assert data["stock"]["total"] == 40 and data["available"] == 40
    assert data["sale_starts_at"].startswith("2027-01-01T10:00:00") and data["sale_ends_at"] is None
    public = client.get("/v1/products/NEW-1", headers=SF).get_json()["data"]
    assert public["available"] == 40 and "stock" not in public


def test_put_changes_stock_without_touching_holds(client, api_inv):
    make_product(api_inv, stock=10)
    client.post("/v1/reservations", json={"user_id": "alice", "items": [{"sku": "HOT", "qty": 4}]}, headers=SF)
    response = client.put("/v1/admin/products/HOT", headers=ADMIN, json={"stock": 6, "price": 999})
    assert response.status_code == 200
    level = stock(api_inv)
    assert (level.total, level.available, level.held) == (6, 2, 4)
    assert api_inv.catalog.get("HOT").price == 999
    below = client.put("/v1/admin/products/HOT", headers=ADMIN, json={"stock": 3, "price": 1})
    assert below.status_code == 409 and error_of(below)["code"] == "stock_below_committed"
    assert api_inv.catalog.get("HOT").price == 999 and stock(api_inv).total == 6


def test_put_with_a_stale_version_is_409_version_conflict(client, api_inv):
    make_product(api_inv)
    version = api_inv.catalog.get("HOT").version
    assert client.put("/v1/admin/products/HOT", headers=ADMIN,
                      json={"name": "A", "expected_version": version}).status_code == 200
    response = client.put("/v1/admin/products/HOT", headers=ADMIN, json={"name": "B", "expected_version": version})
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "version_conflict" and error["details"]["expected"] == version
    assert api_inv.catalog.get("HOT").name == "A"


def test_put_validates_fields(client):
    for body in ({"price": -1}, {"currency": "usd"}, {"stock": 1.5}, {"name": ""}, {"paused": "maybe"},
                 {"sale_starts_at": "2027-01-01T10:00:00"},
                 {"sale_starts_at": "2027-01-02T00:00:00Z", "sale_ends_at": "2027-01-01T00:00:00Z"}):
        response = client.put("/v1/admin/products/HOT", headers=ADMIN, json=body)
        assert response.status_code == 422 and error_of(response)["code"] == "invalid_request", body
    assert client.get("/v1/admin/products/HOT", headers=ADMIN).status_code == 404


def test_stock_set_and_add(client, api_inv):
    make_product(api_inv, stock=10)
    set_response = client.post("/v1/admin/products/HOT/stock", headers=ADMIN, json={"set": 25})
    assert set_response.status_code == 200 and set_response.get_json()["data"]["total"] == 25
    add_response = client.post("/v1/admin/products/HOT/stock", headers=ADMIN, json={"add": -5})
    data = add_response.get_json()["data"]
    assert (data["total"], data["available"]) == (20, 20)
    assert_invariant(stock(api_inv))
    both = client.post("/v1/admin/products/HOT/stock", headers=ADMIN, json={"set": 1, "add": 1})
    assert both.status_code == 422
    stale = client.post("/v1/admin/products/HOT/stock", headers=ADMIN, json={"add": 1, "expected_version": 0})
    assert stale.status_code == 409 and error_of(stale)["code"] == "version_conflict"
    missing = client.post("/v1/admin/products/NOPE/stock", headers=ADMIN, json={"add": 1})
    assert missing.status_code == 404 and error_of(missing)["code"] == "product_not_found"


def test_holds_lists_open_reservations_of_a_sku(client, api_inv):
    make_product(api_inv, stock=10)
    for user, qty in (("alice", 1), ("bob", 3)):
        client.post("/v1/reservations", json={"user_id": user, "items": [{"sku": "HOT", "qty": qty}]}, headers=SF)
    response = client.get("/v1/admin/products/HOT/holds", headers=ADMIN)
    holds = response.get_json()["data"]
    assert sorted((h["user_id"], h["qty"]) for h in holds) == [("alice", 1), ("bob", 3)]
    assert all(h["reservation_id"].startswith("r_") for h in holds)
    assert client.get("/v1/admin/products/NOPE/holds", headers=ADMIN).status_code == 404


def test_put_cannot_reopen_a_sku_that_recovery_is_rebuilding(client, api_inv):
    make_product(api_inv, stock=10)
    api_inv.catalog.set_recovering("HOT", True)
    for paused in (False, True):
        response = client.put("/v1/admin/products/HOT", headers=ADMIN, json={"paused": paused})
        assert response.status_code == 409 and error_of(response)["code"] == "product_recovering"
    assert api_inv.catalog.get("HOT").sale_state.value == "recovering"
    reserve = client.post("/v1/reservations", json={"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}]},
                          headers=SF)
    assert reserve.status_code == 409 and error_of(reserve)["details"]["reason"] == "recovering"
    assert stock(api_inv).available == 10


def test_admin_api_reads_and_sets_the_switch(client, api_inv: Inventory) -> None:
    make_product(api_inv, "HOT", stock=5)
    assert client.get("/v1/admin/sale", headers=ADMIN).get_json() == {"data": {"paused": False}}
    response = client.put("/v1/admin/sale", headers=ADMIN, json={"paused": True})
    assert response.status_code == 200 and response.get_json() == {"data": {"paused": True}}
    refused = client.post("/v1/reservations", headers=SF, json={"user_id": "u1", "items": [{"sku": "HOT", "qty": 1}]})
    assert refused.status_code == 409 and error_of(refused)["details"]["reason"] == "paused_globally"
    assert client.get("/v1/products/HOT", headers=SF).get_json()["data"]["sale_status"] == "paused_globally"
    for body in ({}, {"paused": "yes"}, {"paused": True, "extra": 1}):
        bad = client.put("/v1/admin/sale", headers=ADMIN, json=body)
        assert bad.status_code == 422 and error_of(bad)["code"] == "invalid_request"
    assert client.put("/v1/admin/sale", headers=SF, json={"paused": False}).status_code in (401, 403)
    assert client.put("/v1/admin/sale", headers=ADMIN, json={"paused": False}).get_json()["data"]["paused"] is False
    assert client.post("/v1/reservations", headers=SF,
                       json={"user_id": "u1", "items": [{"sku": "HOT", "qty": 1}]}).status_code == 201


def test_put_buckets_splits_a_live_sku_and_the_storefront_sees_one_product(client, api_inv):
    make_product(api_inv, stock=8, limit=2)
    response = client.put("/v1/admin/products/HOT", headers=ADMIN, json={"buckets": 4})
    data = response.get_json()["data"]
    assert response.status_code == 200 and data["buckets"] == 4 and data["stock"]["total"] == 8
    held = client.post("/v1/reservations", json={"user_id": "alice", "items": [{"sku": "HOT", "qty": 2}]},
                       headers=SF)
    assert held.status_code == 201 and held.get_json()["data"]["items"] == [
        {"sku": "HOT", "qty": 2, "unit_price": 1500, "amount": 3000}]
    over = client.post("/v1/reservations", json={"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}]},
                       headers=SF)
    assert over.status_code == 409 and error_of(over)["code"] == "limit_exceeded"
    assert client.get("/v1/products/HOT", headers=SF).get_json()["data"]["available"] == 6
    assert [p["sku"] for p in client.get("/v1/products", headers=SF).get_json()["data"]] == ["HOT"]
    for body in ({"buckets": 0}, {"buckets": 65}, {"buckets": "2"}, {"buckets": 1.5}):
        bad = client.put("/v1/admin/products/HOT", headers=ADMIN, json=body)
        assert bad.status_code == 422 and error_of(bad)["code"] == "invalid_request", body
    assert api_inv.catalog.get("HOT").buckets == 4
