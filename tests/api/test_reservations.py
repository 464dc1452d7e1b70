"""Reservations over HTTP: hold, read, amend, release, checkout, idempotency, conflicts."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import ADMIN, SF, bearer, error_of
from tests.helpers import assert_invariant, make_product, stock


def reserve(client: Any, user: str = "alice", items: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Any:
    body = {"user_id": user, "items": items or [{"sku": "HOT", "qty": 1}], **extra}
    return client.post("/v1/reservations", json=body, headers={**SF, **(headers or {})})


def test_reserve_returns_201_with_the_hold(client, api_inv):
    make_product(api_inv, stock=5, price=1500)
    response = reserve(client, items=[{"sku": "HOT", "qty": 2}], ttl_seconds=60)
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert data["id"].startswith("r_") and data["status"] == "held" and data["user_id"] == "alice"
    assert data["items"] == [{"sku": "HOT", "qty": 2, "unit_price": 1500, "amount": 3000}]
    assert data["total"] == 3000 and data["order_id"] is None
    assert data["expires_at"] > data["created_at"]
    level = stock(api_inv)
    assert (level.available, level.held) == (3, 2)
    assert_invariant(level)


def test_reserve_when_sold_out_is_409_with_sku_and_available(client, api_inv):
    make_product(api_inv, stock=1)
    response = reserve(client, items=[{"sku": "HOT", "qty": 2}])
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "sold_out"
    assert error["details"] == {"sku": "HOT", "available": 1, "requested": 2,
                                "waitlist_length": 0, "waitlist_open": True}
    assert stock(api_inv).available == 1


def test_reserve_over_per_user_limit_is_409_limit_exceeded(client, api_inv):
    make_product(api_inv, stock=10, limit=1)
    assert reserve(client).status_code == 201
    response = reserve(client)
    assert response.status_code == 409 and error_of(response)["code"] == "limit_exceeded"


def test_reserve_paused_product_is_409_sale_not_active(client, api_inv):
    make_product(api_inv)
    api_inv.catalog.configure("HOT", paused=True)
    response = reserve(client)
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "sale_not_active" and error["details"]["reason"] == "paused"


def test_reserve_unknown_product_is_404_and_changes_nothing(client, api_inv):
    make_product(api_inv, stock=3)
    response = reserve(client, items=[{"sku": "HOT", "qty": 1}, {"sku": "NOPE", "qty": 1}])
    assert response.status_code == 404 and error_of(response)["code"] == "product_not_found"
    assert stock(api_inv).available == 3


def test_reserve_rejects_invalid_bodies_with_422_and_field_details(client, api_inv):
    make_product(api_inv)
    cases = [
        {"user_id": "alice", "items": [{"sku": "HOT", "qty": 0}]},
        {"user_id": "alice", "items": [{"sku": "HOT", "qty": "1"}]},
        {"user_id": "alice", "items": []},
        {"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}, {"sku": "HOT", "qty": 2}]},
        {"user_id": "alice", "items": [{"sku": "bad sku!", "qty": 1}]},
        {"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}], "extra": 1},
        {"user_id": "", "items": [{"sku": "HOT", "qty": 1}]},
        {"items": [{"sku": "HOT", "qty": 1}]},
        [1, 2, 3],
        # `$` in the patterns would let a trailing newline through re.match: names are checked whole
        {"user_id": "alice\n", "items": [{"sku": "HOT", "qty": 1}]},
        {"user_id": "alice", "items": [{"sku": "HOT\n", "qty": 1}]},
    ]
    for body in cases:
        response = client.post("/v1/reservations", json=body, headers=SF)
        assert response.status_code == 422, body
        error = error_of(response)
        assert error["code"] == "invalid_request" and error["details"]["fields"], body
    assert stock(api_inv).held == 0


def test_names_with_a_trailing_newline_are_refused_everywhere(client, api_inv):
    make_product(api_inv)
    held = reserve(client).get_json()["data"]
    created = client.put("/v1/admin/products/NEW%0A", headers=ADMIN, json={"name": "N", "price": 1, "stock": 1})
    assert created.status_code == 422 and error_of(created)["code"] in ("invalid_argument", "invalid_request")
    assert client.get("/v1/products/NEW", headers=SF).status_code == 404
    read = client.get(f"/v1/reservations/{held['id']}%0A", headers=SF, query_string={"user_id": "alice"})
    assert read.status_code == 404 and error_of(read)["code"] == "reservation_not_found"
    assert stock(api_inv).held == 1


def test_reserve_ttl_above_the_configured_maximum_is_422_invalid_argument(client, api_inv):
    make_product(api_inv)
    response = reserve(client, ttl_seconds=api_inv.settings.max_hold_ttl_seconds + 1)
    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid_argument"


def test_malformed_json_is_400_and_non_json_is_415(client):
    response = client.post("/v1/reservations", data=b"{not json", headers={**SF, "Content-Type": "application/json"})
    assert response.status_code == 400 and error_of(response)["code"] == "bad_request"
    response = client.post("/v1/reservations", data=b"user_id=a", headers={**SF, "Content-Type": "text/plain"})
    assert response.status_code == 415 and error_of(response)["code"] == "unsupported_media_type"


def test_get_reservation_shows_the_owner_and_hides_it_from_others(client, api_inv):
    make_product(api_inv)
    rid = reserve(client).get_json()["data"]["id"]
    mine = client.get(f"/v1/reservations/{rid}?user_id=alice", headers=SF)
    assert mine.status_code == 200 and mine.get_json()["data"]["id"] == rid
    theirs = client.get(f"/v1/reservations/{rid}?user_id=mallory", headers=SF)
    assert theirs.status_code == 404 and error_of(theirs)["code"] == "reservation_not_found"
    assert "alice" not in theirs.get_data(as_text=True)
    malformed = client.get("/v1/reservations/not-an-id?user_id=alice", headers=SF)
    assert malformed.status_code == 404


def test_storefront_key_without_user_id_is_422(client, api_inv):
    make_product(api_inv)
    rid = reserve(client).get_json()["data"]["id"]
    response = client.get(f"/v1/reservations/{rid}", headers=SF)
    assert response.status_code == 422
    assert "user_id" in error_of(response)["details"]["fields"]


def test_patch_adds_changes_and_removes_lines_atomically(client, api_inv):
    make_product(api_inv, "HOT", stock=5)
    make_product(api_inv, "MUG", stock=5, price=700)
    rid = reserve(client).get_json()["data"]["id"]
    response = client.patch(f"/v1/reservations/{rid}", headers=SF, json={
        "user_id": "alice", "items": [{"sku": "HOT", "qty": 3}, {"sku": "MUG", "qty": 2}]})
    assert response.status_code == 200
    items = {item["sku"]: item["qty"] for item in response.get_json()["data"]["items"]}
    assert items == {"HOT": 3, "MUG": 2}
    too_many = client.patch(f"/v1/reservations/{rid}", headers=SF, json={
        "user_id": "alice", "items": [{"sku": "HOT", "qty": 1}, {"sku": "MUG", "qty": 9}]})
    assert too_many.status_code == 409 and error_of(too_many)["code"] == "sold_out"
    assert (stock(api_inv, "HOT").held, stock(api_inv, "MUG").held) == (3, 2)
    removed = client.patch(f"/v1/reservations/{rid}", headers=SF, json={
        "user_id": "alice", "items": [{"sku": "MUG", "qty": 0}]})
    assert [item["sku"] for item in removed.get_json()["data"]["items"]] == ["HOT"]
    assert stock(api_inv, "MUG").held == 0
    other = client.patch(f"/v1/reservations/{rid}", headers=SF, json={
        "user_id": "mallory", "items": [{"sku": "HOT", "qty": 1}]})
    assert other.status_code == 404
    assert stock(api_inv, "HOT").held == 3


def test_delete_releases_the_hold_once(client, api_inv):
    make_product(api_inv, stock=4)
    rid = reserve(client, items=[{"sku": "HOT", "qty": 3}]).get_json()["data"]["id"]
    first = client.delete(f"/v1/reservations/{rid}?user_id=alice", headers=SF)
    assert first.status_code == 200 and first.get_json()["data"]["status"] == "released"
    again = client.delete(f"/v1/reservations/{rid}?user_id=alice", headers=SF)
    assert again.status_code == 200
    level = stock(api_inv)
    assert (level.available, level.held) == (4, 0)
    closed = client.post(f"/v1/reservations/{rid}/checkout", json={"user_id": "alice"}, headers=SF)
    assert closed.status_code == 409 and error_of(closed)["code"] == "reservation_closed"


def test_checkout_returns_202_pending_payment_and_notifies_the_sync_layer_once(client, api_inv, checkout_hook):
    make_product(api_inv, stock=2)
    rid = reserve(client).get_json()["data"]["id"]
    response = client.post(f"/v1/reservations/{rid}/checkout", json={"user_id": "alice"}, headers=SF)
    assert response.status_code == 202
    data = response.get_json()["data"]
    assert data["status"] == "pending_payment" and data["order_id"].startswith("o_")
    assert data["reservation_id"] == rid
    again = client.post(f"/v1/reservations/{rid}/checkout", json={"user_id": "alice"}, headers=SF)
    assert again.status_code == 202 and again.get_json()["data"]["order_id"] == data["order_id"]
    assert checkout_hook.orders == [data["order_id"]]
    level = stock(api_inv)
    assert (level.held, level.sold) == (0, 1)


def test_checkout_after_expiry_is_409_reservation_expired(client, api_inv, clock):
    make_product(api_inv, stock=2)
    rid = reserve(client, ttl_seconds=30).get_json()["data"]["id"]
    clock.advance(31)
    assert client.get(f"/v1/reservations/{rid}?user_id=alice", headers=SF).get_json()["data"]["status"] == "expired"
    response = client.post(f"/v1/reservations/{rid}/checkout", json={"user_id": "alice"}, headers=SF)
    assert response.status_code == 409 and error_of(response)["code"] == "reservation_expired"
    assert stock(api_inv).available == 2


def test_checkout_of_another_users_reservation_is_404(client, api_inv):
    make_product(api_inv)
    rid = reserve(client).get_json()["data"]["id"]
    response = client.post(f"/v1/reservations/{rid}/checkout", json={"user_id": "mallory"}, headers=SF)
    assert response.status_code == 404
    assert stock(api_inv).held == 1


def test_checkout_with_a_user_token_needs_no_body(client, api_inv):
    make_product(api_inv)
    rid = reserve(client, user="bob").get_json()["data"]["id"]
    response = client.post(f"/v1/reservations/{rid}/checkout", headers=bearer("bob"))
    assert response.status_code == 202


def test_same_idempotency_key_and_body_returns_the_stored_response(client, api_inv):
    make_product(api_inv, stock=5)
    key = {"Idempotency-Key": "order-attempt-1"}
    first = reserve(client, headers=key)
    second = reserve(client, headers=key)
    assert first.status_code == second.status_code == 201
    assert second.get_data() == first.get_data()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert stock(api_inv).held == 1


def test_same_idempotency_key_with_another_body_is_422(client, api_inv):
    make_product(api_inv, stock=5)
    key = {"Idempotency-Key": "order-attempt-2"}
    assert reserve(client, headers=key).status_code == 201
    response = reserve(client, items=[{"sku": "HOT", "qty": 2}], headers=key)
    assert response.status_code == 422 and error_of(response)["code"] == "idempotency_key_reused"
    assert stock(api_inv).held == 1


def test_another_users_request_with_the_same_key_is_a_different_key(client, api_inv):
    make_product(api_inv, stock=5)
    key = {"Idempotency-Key": "shared-key-text"}
    alice = reserve(client, headers=key)
    bob = reserve(client, user="bob", items=[{"sku": "HOT", "qty": 2}], headers=key)
    assert alice.status_code == bob.status_code == 201
    assert bob.get_json()["data"]["id"] != alice.get_json()["data"]["id"]
    assert reserve(client, headers=key).get_data() == alice.get_data()
    assert stock(api_inv).held == 3


def test_a_storefront_request_and_the_same_users_token_share_a_key(client, api_inv):
    make_product(api_inv, stock=5)
    first = reserve(client, user="bob", headers={"Idempotency-Key": "bob-1"})
    again = client.post("/v1/reservations", json={"items": [{"sku": "HOT", "qty": 1}]},
                        headers={**bearer("bob"), "Idempotency-Key": "bob-1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data() and stock(api_inv).held == 1


def test_idempotent_replay_of_a_conflict_returns_the_original_409(client, api_inv):
    make_product(api_inv, stock=1)
    key = {"Idempotency-Key": "too-many"}
    first = reserve(client, items=[{"sku": "HOT", "qty": 2}], headers=key)
    assert first.status_code == 409
    api_inv.catalog.adjust_stock("HOT", set_total=10)
    replay = reserve(client, items=[{"sku": "HOT", "qty": 2}], headers=key)
    assert replay.status_code == 409 and replay.get_data() == first.get_data()
    assert stock(api_inv).held == 0


def test_invalid_idempotency_key_is_422(client, api_inv):
    make_product(api_inv)
    response = reserve(client, headers={"Idempotency-Key": "x" * 256})
    assert response.status_code == 422 and "Idempotency-Key" in error_of(response)["details"]["fields"]


def test_checkout_idempotency_key_replays_the_202(client, api_inv, checkout_hook):
    make_product(api_inv)
    rid = reserve(client).get_json()["data"]["id"]
    headers = {**SF, "Idempotency-Key": "pay-1"}
    first = client.post(f"/v1/reservations/{rid}/checkout", json={"user_id": "alice"}, headers=headers)
    second = client.post(f"/v1/reservations/{rid}/checkout", json={"user_id": "alice"}, headers=headers)
    assert first.status_code == second.status_code == 202 and first.get_data() == second.get_data()
    other = reserve(client).get_json()["data"]["id"]
    reused = client.post(f"/v1/reservations/{other}/checkout", json={"user_id": "alice"}, headers=headers)
    assert reused.status_code == 422 and error_of(reused)["code"] == "idempotency_key_reused"
    # Another user's request with this key text is that user's own key: it cannot poison alice's.
    bob = client.post(f"/v1/reservations/{rid}/checkout", json={"user_id": "bob"}, headers=headers)
    assert bob.status_code == 404 and error_of(bob)["code"] == "reservation_not_found"
    third = client.post(f"/v1/reservations/{rid}/checkout", json={"user_id": "alice"}, headers=headers)
    assert third.status_code == 202 and third.get_data() == first.get_data()
    assert len(checkout_hook.orders) == 1
