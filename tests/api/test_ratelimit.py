"""Rate limits per user and per client IP on reservation endpoints: 429, Retry-After, the envelope."""

from __future__ import annotations

import pytest

from api import create_app
from tests.api.conftest import SF, error_of
from tests.helpers import make_product


@pytest.fixture
def limited_client(api_settings, api_inv):
    settings = api_settings.with_overrides(rate_limit_reservations="3/minute",
                                           rate_limit_reservations_per_ip="5/minute")
    return create_app(settings, inventory=api_inv, on_checkout=None).test_client()


def reserve(client, user):
    return client.post("/v1/reservations", json={"user_id": user, "items": [{"sku": "HOT", "qty": 1}]}, headers=SF)


def test_a_user_over_the_limit_gets_429_with_retry_after(limited_client, api_inv):
    make_product(api_inv, stock=100)
    statuses = [reserve(limited_client, "alice").status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    response = reserve(limited_client, "alice")
    error = error_of(response)
    assert error["code"] == "rate_limited" and error["details"]["limit"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert api_inv.catalog.get("HOT").stock.held == 3


def test_the_client_ip_has_its_own_limit_across_users(limited_client, api_inv):
    make_product(api_inv, stock=100)
    statuses = [reserve(limited_client, f"user-{n}").status_code for n in range(6)]
    assert statuses == [201] * 5 + [429]


def test_every_reservation_endpoint_shares_the_users_budget(limited_client, api_inv):
    make_product(api_inv, stock=100)
    rid = reserve(limited_client, "alice").get_json()["data"]["id"]
    assert limited_client.get(f"/v1/reservations/{rid}?user_id=alice", headers=SF).status_code == 200
    assert limited_client.delete(f"/v1/reservations/{rid}?user_id=alice", headers=SF).status_code == 200
    response = limited_client.get(f"/v1/reservations/{rid}?user_id=alice", headers=SF)
    assert response.status_code == 429 and error_of(response)["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1
    assert reserve(limited_client, "alice").status_code == 429
    assert limited_client.get("/v1/products", headers=SF).status_code == 200  # product reads are not limited


def test_embedded_mode_limits_in_process(api_settings, clock):
    import fakeredis

    from inventory import Inventory

    settings = api_settings.with_overrides(redis_url="memory://", rate_limit_reservations="2/minute")
    inventory = Inventory(fakeredis.FakeRedis(server=fakeredis.FakeServer()), settings, clock)
    make_product(inventory, stock=10)
    client = create_app(settings, inventory=inventory, on_checkout=None).test_client()
    assert [reserve(client, "alice").status_code for _ in range(3)] == [201, 201, 429]


def test_the_reserve_scripts_buckets_are_flask_limiters_counters(api_settings, api_inv):
    from api.ratelimit import IP_SCOPE, USER_SCOPE

    app = create_app(api_settings, inventory=api_inv, on_checkout=None)
    limits, storage = app.extensions["flashstock"].limits, app.extensions["flashstock_limiter"].storage
    for user in ("alice", "a", "bob@shop.example", "u:1/2", "x" * 128):  # the key is spliced, not built by limits
        user_bucket, ip_bucket = limits.buckets(user, "10.0.0.1")
        assert user_bucket.key == storage.prefixed_key(limits.user_item.key_for(f"u:{user}", USER_SCOPE))
        assert ip_bucket.key == storage.prefixed_key(limits.ip_item.key_for("10.0.0.1", IP_SCOPE))
        assert (user_bucket.limit, user_bucket.window_seconds) == (1000, 1)
        assert user_bucket.label == str(limits.user_item)


def test_the_hot_path_and_the_idempotent_flask_path_share_one_budget(limited_client, api_inv):
    make_product(api_inv, stock=100)
    body = {"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}]}
    assert reserve(limited_client, "alice").status_code == 201  # hot path
    keyed = {**SF, "Idempotency-Key": "k-1"}
    assert limited_client.post("/v1/reservations", json=body, headers=keyed).status_code == 201  # Flask view
    assert reserve(limited_client, "alice").status_code == 201
    response = limited_client.post("/v1/reservations", json=body, headers={**SF, "Idempotency-Key": "k-2"})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1


def test_a_rate_limited_keyed_request_is_not_stored_so_a_later_retry_runs(limited_client, api_inv):
    make_product(api_inv, stock=100)
    for n in range(3):
        assert reserve(limited_client, "alice").status_code == 201
    body = {"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}]}
    keyed = {**SF, "Idempotency-Key": "retry-me"}
    first = limited_client.post("/v1/reservations", json=body, headers=keyed)
    assert first.status_code == 429
    again = limited_client.post("/v1/reservations", json=body, headers=keyed)
    assert again.status_code == 429 and "Idempotent-Replayed" not in again.headers
    assert not api_inv.redis.keys(api_inv.keys.scoped("idem:*"))
