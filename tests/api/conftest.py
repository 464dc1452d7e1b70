"""Fixtures for the API tests: the Flask test client over a real redis-server, with a manual clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Iterator

import jwt
import pytest

from api import create_app
from inventory import Inventory, Settings
from tests.clocks import ManualClock

STOREFRONT_KEYS = ("sf-key-current", "sf-key-previous")
ADMIN_KEYS = ("admin-key-current", "admin-key-previous")
JWT_SECRET = "jwt-test-secret-with-enough-entropy-for-hs512-0123456789abcdefghijklmnop"
WEBHOOK_RAW_SECRET = b"webhook-test-secret-0123456789ab"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_RAW_SECRET).decode()
SF = {"X-API-Key": STOREFRONT_KEYS[0]}
ADMIN = {"X-API-Key": ADMIN_KEYS[0]}


def with_api_settings(settings: Settings) -> Settings:
    """Test credentials and generous rate limits on top of the per-test prefix and Redis."""
    return settings.with_overrides(
        storefront_api_keys=STOREFRONT_KEYS,
        admin_api_keys=ADMIN_KEYS,
        jwt_secret=JWT_SECRET,
        webhook_secret=WEBHOOK_SECRET,
        rate_limit_reservations="1000/second",
        rate_limit_reservations_per_ip="10000/second",
        # Nothing on these paths may need the database: an unreachable one proves it. Except the recovery
        # check after Redis lost its scripts (a fresh cluster node has none), which is off here and
        # tested on its own (tests/integration/test_restart_from_old_snapshot.py).
        database_url="postgresql+psycopg2://nobody@127.0.0.1:1/none",
        recovery_on_script_loss=False,
    )


@pytest.fixture(params=[True, False], ids=["hot-path", "flask-only"])
def api_settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Every API test runs with POST /v1/reservations on the WSGI hot path and on the Flask view."""
    return with_api_settings(settings).with_overrides(api_fast_path=request.param)


class CheckoutRecorder:
    """Stands in for the sync layer's notify hook."""

    def __init__(self) -> None:
        self.orders: list[str] = []

    def __call__(self, order: Any) -> None:
        self.orders.append(order.id)


@pytest.fixture
def checkout_hook() -> CheckoutRecorder:
    return CheckoutRecorder()


@pytest.fixture
def api_inv(real_redis: Any, api_settings: Settings, clock: ManualClock) -> Inventory:
    return Inventory(real_redis, api_settings, clock)


@pytest.fixture
def app(api_settings: Settings, api_inv: Inventory, checkout_hook: CheckoutRecorder) -> Any:
    return create_app(api_settings, inventory=api_inv, on_checkout=checkout_hook)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    with app.test_client() as test_client:
        yield test_client


def user_token(sub: str, *, expires_in: int = 300, secret: str = JWT_SECRET, algorithm: str = "HS256",
               **claims: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + expires_in, **claims}, secret, algorithm=algorithm)


def bearer(sub: str, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(sub, **kwargs)}"}


def signed(body: dict[str, Any] | bytes, now_ms: int, *, msg_id: str = "msg_1",
           secret: bytes = WEBHOOK_RAW_SECRET, skew_seconds: int = 0) -> tuple[bytes, dict[str, str]]:
    """A webhook body and Standard Webhooks headers signed as the payment provider would."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = str(now_ms // 1000 + skew_seconds)
    digest = hmac.new(secret, f"{msg_id}.{stamp}.".encode() + raw, hashlib.sha256).digest()
    headers = {"webhook-id": msg_id, "webhook-timestamp": stamp,
               "webhook-signature": f"v1,{base64.b64encode(digest).decode()}",
               "Content-Type": "application/json"}
    return raw, headers


def error_of(response: Any) -> dict[str, Any]:
    """The error object of an envelope response, checking the envelope's shape."""
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def until_units_heard(inv: Inventory, sku: str, timeout: float = 5.0) -> None:
    """Wait until this process's sold-out cache has heard that units of `sku` came back.

    The cache learns of returns by pub/sub within a bound (100 ms is the target, tests/concurrency/
    test_soldout_bound.py), not at once: on a cluster the announcement crosses the cluster bus first.
    """
    deadline = time.monotonic() + timeout
    while inv.reservations.soldout.knows(sku):
        assert time.monotonic() < deadline, f"no announcement of units back for {sku} within {timeout} s"
        time.sleep(0.005)
