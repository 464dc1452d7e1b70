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


def test_pipelined_hit_loads_the_limit_script_when_the_server_lacks_it(real_redis, key_prefix):
    from limits.storage import RedisStorage

    from api.ratelimit import ReservationLimits

    base = RedisStorage.SCRIPT_INCR_EXPIRE
    base = base.decode() if isinstance(base, bytes) else base
    source = f"{base}\n-- {key_prefix}"  # a script (SHA) this server has never seen: NOSCRIPT first
    script = real_redis.register_script(source)
    names = [f"{key_prefix}:rl:a", f"{key_prefix}:rl:b"]

    class Item:
        @staticmethod
        def get_expiry() -> int:
            return 60

    checks = [(Item, "a", "s"), (Item, "b", "s")]
    real_redis.set(f"{key_prefix}:idem", b"stored")
    replies = ReservationLimits._pipelined(real_redis, script, checks, names, f"{key_prefix}:idem")
    assert replies == [1, 1, b"stored"]
    assert ReservationLimits._pipelined(real_redis, script, checks, names, None) == [2, 2]
    assert 0 < real_redis.ttl(names[0]) <= 60
