"""The operations dashboard's sign-in, session, CSRF and data endpoints (Flask test client, real Redis)."""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

from api import create_app
from api.dashboard_auth import COOKIE_NAME
from inventory import Inventory, Settings
from inventory.sale_admin import global_paused
from tests.api.conftest import ADMIN_KEYS, STOREFRONT_KEYS, error_of, with_api_settings
from tests.clocks import ManualClock
from tests.helpers import make_product, stock


@pytest.fixture
def dash_settings(settings: Settings) -> Settings:
    return with_api_settings(settings).with_overrides(dashboard_secret="dash-test-secret")


@pytest.fixture
def dash_inv(real_redis: Any, dash_settings: Settings, clock: ManualClock) -> Inventory:
    return Inventory(real_redis, dash_settings, clock)


@pytest.fixture
def dash(dash_settings: Settings, dash_inv: Inventory) -> Iterator[Any]:
    app = create_app(dash_settings, inventory=dash_inv, on_checkout=None)
    with app.test_client() as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf(?:_token|-token)" (?:value|content)="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client: Any, key: str = ADMIN_KEYS[0]) -> Any:
    token = csrf_of(client.get("/dashboard/login").get_data(as_text=True))
    return client.post("/dashboard/login", data={"api_key": key, "csrf_token": token})


def page_token(client: Any) -> str:
    return csrf_of(client.get("/dashboard/").get_data(as_text=True))


def test_page_redirects_to_sign_in_when_signed_out(dash: Any) -> None:
    response = dash.get("/dashboard/")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/dashboard/login")


def test_data_answers_401_in_the_envelope_when_signed_out(dash: Any) -> None:
    response = dash.get("/dashboard/data")
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "unauthorized" and error["details"] == {"reason": "signed_out"}


def test_sign_in_sets_an_httponly_samesite_strict_session_cookie(dash: Any) -> None:
    response = sign_in(dash)
    assert response.status_code == 303 and response.headers["Location"].endswith("/dashboard/")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
    assert ADMIN_KEYS[0] not in cookie
    assert dash.get("/dashboard/").status_code == 200


@pytest.mark.parametrize("key, status, code", [("wrong-key", 401, "unauthorized"), ("", 401, "unauthorized"),
                                               (STOREFRONT_KEYS[0], 403, "forbidden")])
def test_sign_in_refuses_bad_credentials_with_a_clear_code(dash: Any, key: str, status: int, code: str) -> None:
    response = sign_in(dash, key)
    assert response.status_code == status
    assert f'data-code="{code}"' in response.get_data(as_text=True)
    assert dash.get("/dashboard/data").status_code == 401


def test_sign_in_without_the_csrf_token_is_refused(dash: Any) -> None:
    dash.get("/dashboard/login")
    response = dash.post("/dashboard/login", data={"api_key": ADMIN_KEYS[0]})
    assert response.status_code == 403
    assert 'data-code="csrf_failed"' in response.get_data(as_text=True)
    assert dash.get("/dashboard/data").status_code == 401


def test_data_shows_live_counters_persistence_lag_and_database_state(dash: Any, dash_inv: Inventory) -> None:
    make_product(dash_inv, "DASH-1", stock=10)
    dash_inv.reservations.reserve("u1", {"DASH-1": 3})
    sign_in(dash)
    response = dash.get("/dashboard/data")
    assert response.status_code == 200
    data = response.get_json()["data"]
    row = next(r for r in data["skus"] if r["sku"] == "DASH-1")
    assert (row["total"], row["available"], row["held"], row["sold"], row["open_holds"]) == (10, 7, 3, 0, 1)
    assert row["state"] == "active" and row["soonest_expiry_ms"] > data["now_ms"]
    assert row["paid"] is None  # the test database is unreachable on purpose: shown, not a 500
    assert data["database"].startswith("unavailable")
    assert data["paused_globally"] is False and data["hot_skus"][0] == "DASH-1"
    assert set(data["counters"]["rejections"]) == {"sold_out", "limit_exceeded", "rate_limited", "sale_not_active"}
    assert data["outbox"]["depth"] >= 0 and data["redis_memory"]["used"] > 0


def test_data_refuses_an_invalid_limit(dash: Any) -> None:
    sign_in(dash)
    response = dash.get("/dashboard/data?limit=abc")
    assert response.status_code == 422 and error_of(response)["code"] == "invalid_request"


def test_actions_without_the_csrf_token_are_refused(dash: Any, dash_inv: Inventory) -> None:
    make_product(dash_inv, "DASH-1")
    sign_in(dash)
    for path in ("/dashboard/skus/DASH-1/pause", "/dashboard/sale/pause"):
        response = dash.post(path, headers={"X-CSRF-Token": "forged"})
        assert response.status_code == 403 and error_of(response)["code"] == "csrf_failed"
    assert dash_inv.catalog.get("DASH-1").sale_state.value == "active"
    assert global_paused(dash_inv) is False


def test_actions_when_signed_out_answer_401(dash: Any) -> None:
    response = dash.post("/dashboard/sale/pause")
    assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"


def test_pause_and_resume_one_sku(dash: Any, dash_inv: Inventory) -> None:
    make_product(dash_inv, "DASH-1")
    sign_in(dash)
    headers = {"X-CSRF-Token": page_token(dash)}
    response = dash.post("/dashboard/skus/DASH-1/pause", headers=headers)
    assert response.status_code == 200 and response.get_json()["data"]["state"] == "paused"
    assert dash_inv.catalog.get("DASH-1").sale_state.value == "paused"
    assert dash.post("/dashboard/skus/DASH-1/resume", headers=headers).get_json()["data"]["state"] == "active"
    missing = dash.post("/dashboard/skus/NOPE/pause", headers=headers)
    assert missing.status_code == 404 and error_of(missing)["code"] == "product_not_found"
    assert stock(dash_inv, "DASH-1").available == 10


def test_pause_and_resume_everything(dash: Any, dash_inv: Inventory) -> None:
    sign_in(dash)
    headers = {"X-CSRF-Token": page_token(dash)}
    assert dash.post("/dashboard/sale/pause", headers=headers).get_json() == {"data": {"paused": True}}
    assert global_paused(dash_inv) is True
    assert dash.get("/dashboard/data").get_json()["data"]["paused_globally"] is True
    assert dash.post("/dashboard/sale/resume", headers=headers).get_json() == {"data": {"paused": False}}
    assert global_paused(dash_inv) is False


def test_sign_out_ends_the_session(dash: Any) -> None:
    sign_in(dash)
    response = dash.post("/dashboard/logout", data={"csrf_token": page_token(dash)})
    assert response.status_code == 303
    assert dash.get("/dashboard/data").status_code == 401


def test_an_expired_session_is_signed_out(dash: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import api.dashboard_auth as dashboard_auth

    sign_in(dash)
    later = dashboard_auth.time.time() + 8 * 3600 + 1
    monkeypatch.setattr(dashboard_auth.time, "time", lambda: later)
    assert dash.get("/dashboard/data").status_code == 401


def test_removing_the_admin_key_signs_its_sessions_out(dash_settings: Settings, dash_inv: Inventory) -> None:
    app = create_app(dash_settings, inventory=dash_inv, on_checkout=None)
    client = app.test_client()
    sign_in(client, ADMIN_KEYS[1])
    cookie = client.get_cookie(COOKIE_NAME, path="/dashboard")
    assert cookie is not None
    rotated = create_app(dash_settings.with_overrides(admin_api_keys=ADMIN_KEYS[:1]), inventory=dash_inv,
                         on_checkout=None)
    other = rotated.test_client()
    other.set_cookie(COOKIE_NAME, cookie.value, path="/dashboard")
    assert other.get("/dashboard/data").status_code == 401


def test_vendored_chart_library_is_served_locally(dash: Any) -> None:
    response = dash.get("/dashboard/static/vendor/uplot/uPlot.iife.min.js")
    assert response.status_code == 200 and b"uPlot" in response.data
    response.close()
