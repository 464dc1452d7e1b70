"""Credentials: storefront keys (rotation), user JWTs (pinned algorithms, expiry), admin keys, 401 vs 403."""

from __future__ import annotations

import jwt

from tests.api.conftest import ADMIN, ADMIN_KEYS, JWT_SECRET, SF, STOREFRONT_KEYS, bearer, error_of, user_token
from tests.helpers import make_product, stock


def test_storefront_call_without_credentials_is_401_with_www_authenticate(client):
    response = client.get("/v1/products")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert "Bearer" in response.headers["WWW-Authenticate"]


def test_unknown_api_key_is_401(client):
    response = client.get("/v1/products", headers={"X-API-Key": "sf-key-guess"})
    assert response.status_code == 401 and error_of(response)["details"]["reason"] == "invalid_api_key"


def test_every_configured_key_is_valid_during_rotation(client):
    for key in STOREFRONT_KEYS:
        assert client.get("/v1/products", headers={"X-API-Key": key}).status_code == 200
    for key in ADMIN_KEYS:
        assert client.get("/v1/admin/products/NOPE", headers={"X-API-Key": key}).status_code == 404


def test_user_token_acts_as_its_subject(client, api_inv):
    make_product(api_inv)
    response = client.post("/v1/reservations", json={"items": [{"sku": "HOT", "qty": 1}]}, headers=bearer("bob"))
    assert response.status_code == 201 and response.get_json()["data"]["user_id"] == "bob"


def test_user_token_cannot_act_for_another_user(client, api_inv):
    make_product(api_inv)
    response = client.post("/v1/reservations", json={"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}]},
                           headers=bearer("bob"))
    assert response.status_code == 403 and error_of(response)["code"] == "forbidden"
    assert stock(api_inv).held == 0


def test_user_token_sees_only_its_own_reservations(client, api_inv):
    make_product(api_inv)
    rid = client.post("/v1/reservations", json={"items": [{"sku": "HOT", "qty": 1}]},
                      headers=bearer("bob")).get_json()["data"]["id"]
    assert client.get(f"/v1/reservations/{rid}", headers=bearer("bob")).status_code == 200
    other = client.get(f"/v1/reservations/{rid}", headers=bearer("carol"))
    assert other.status_code == 404 and error_of(other)["code"] == "reservation_not_found"
    assert client.delete(f"/v1/reservations/{rid}", headers=bearer("carol")).status_code == 404
    assert stock(api_inv).held == 1


def test_expired_token_is_401_expired(client):
    response = client.get("/v1/products", headers=bearer("bob", expires_in=-60))
    assert response.status_code == 401 and error_of(response)["details"]["reason"] == "expired"


def test_tokens_with_wrong_secret_other_algorithm_or_no_expiry_are_401(client):
    forged = user_token("bob", secret="not-the-secret-but-long-enough-for-hs512-0123456789abcdefghijklmnopq")
    other_alg = user_token("bob", algorithm="HS512")
    unsigned = jwt.encode({"sub": "bob", "exp": 4102444800}, None, algorithm="none")
    no_exp = jwt.encode({"sub": "bob"}, JWT_SECRET, algorithm="HS256")
    bad_sub = user_token("bad user!")
    for token in (forged, other_alg, unsigned, no_exp, bad_sub, "not.a.jwt"):
        response = client.get("/v1/products", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert error_of(response)["code"] == "unauthorized"


def test_admin_routes_refuse_storefront_and_user_credentials_with_403(client):
    for headers in (SF, bearer("bob")):
        response = client.put("/v1/admin/products/HOT", json={"name": "x"}, headers=headers)
        assert response.status_code == 403 and error_of(response)["code"] == "forbidden"
    assert client.put("/v1/admin/products/HOT", json={"name": "x"}).status_code == 401


def test_storefront_routes_refuse_admin_keys_with_403(client):
    response = client.get("/v1/products", headers=ADMIN)
    assert response.status_code == 403 and error_of(response)["code"] == "forbidden"
