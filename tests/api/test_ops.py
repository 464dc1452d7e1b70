"""Operations and cross-cutting behaviour: health, metrics, docs, request ids, logs, HTTP-level errors."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram

from api import create_app, metrics, observability
from inventory.migrations import upgrade
from tests.api.conftest import ADMIN, SF, error_of
from tests.helpers import make_product, outbox_length


def test_livez_answers_without_dependencies(client):
    response = client.get("/livez")
    assert response.status_code == 200 and response.get_json() == {"data": {"status": "ok"}}


def test_readyz_checks_redis_and_postgres(api_settings, api_inv, pg_schema_url):
    app = create_app(api_settings.with_overrides(database_url=pg_schema_url), inventory=api_inv, on_checkout=None)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["data"]["checks"] == {"redis": "ok", "database": "ok"}


def test_readyz_is_503_when_the_database_is_unreachable(client):
    response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["Retry-After"]
    error = error_of(response)
    assert error["code"] == "unavailable" and error["details"]["redis"] == "ok"
    assert error["details"]["database"].startswith("unavailable")


@pytest.mark.timeout(30)  # a hang (no bounded timeout) fails the test
def test_redis_unreachable_is_503_with_retry_after(api_settings):
    down = api_settings.with_overrides(redis_url="redis://127.0.0.1:1/0", redis_timeout_seconds=0.5)
    client = create_app(down, on_checkout=None).test_client()
    for method, path, body in (("GET", "/v1/products", None),
                               ("POST", "/v1/reservations", {"user_id": "a", "items": [{"sku": "HOT", "qty": 1}]}),
                               ("GET", "/v1/reservations/r_0123456789abcdef?user_id=a", None),
                               ("GET", "/readyz", None)):
        response = client.open(path, method=method, json=body, headers=SF)
        assert response.status_code == 503, path
        assert response.headers["Retry-After"]
        assert error_of(response)["code"] == "unavailable"


def test_admin_reconcile_runs_the_core_reconciliation_and_returns_its_report(api_settings, api_inv, pg_schema_url):
    upgrade(pg_schema_url)
    app = create_app(api_settings.with_overrides(database_url=pg_schema_url), inventory=api_inv, on_checkout=None)
    client = app.test_client()
    make_product(api_inv, stock=5)
    response = client.post("/v1/admin/reconcile", json={"repair": False, "full": True}, headers=ADMIN)
    assert response.status_code == 200
    report = response.get_json()["data"]
    assert report["repair"] is False and report["full"] is True and report["skus_checked"] >= 1
    assert "drifts" in report and "clean" in report
    assert client.post("/v1/admin/reconcile", json={"repair": "yes"}, headers=ADMIN).status_code == 422
    assert client.post("/v1/admin/reconcile", json={}, headers=SF).status_code == 403


def test_metrics_expose_requests_latency_outcomes_and_stock(client, api_inv):
    make_product(api_inv, stock=1)
    body = {"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}]}
    client.post("/v1/reservations", json=body, headers=SF)
    client.post("/v1/reservations", json={**body, "user_id": "bob"}, headers=SF)
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'flashstock_http_requests_total\{endpoint="/v1/reservations",method="POST",status="201"\}',
                     text)
    assert "flashstock_http_request_duration_seconds_bucket" in text
    assert re.search(r'flashstock_reservations_total\{outcome="sold_out"\} [1-9]', text)
    assert 'flashstock_stock_available{sku="HOT"} 0.0' in text
    assert 'flashstock_stock_held{sku="HOT"} 1.0' in text


def test_metrics_say_how_far_persistence_is_behind(client, api_inv):
    make_product(api_inv, stock=3)
    held = client.post("/v1/reservations", json={"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}]},
                       headers=SF).get_json()["data"]
    assert client.post(f"/v1/reservations/{held['id']}/checkout", json={"user_id": "alice"},
                       headers=SF).status_code == 202
    waiting = outbox_length(api_inv)
    assert waiting >= 3  # product configured, stock set, order placed: nothing persisted in this test
    text = client.get("/metrics").get_data(as_text=True)
    assert f"flashstock_outbox_depth {float(waiting)}" in text
    age = float(re.search(r"^flashstock_outbox_oldest_age_seconds (\S+)$", text, re.M).group(1))
    assert age >= 0

    for part in api_inv.keys.parts:  # as the drain leaves it: every entry persisted and deleted
        api_inv.redis.delete(part.outbox)
    text = client.get("/metrics").get_data(as_text=True)
    assert "flashstock_outbox_depth 0.0" in text and "flashstock_outbox_oldest_age_seconds 0.0" in text


def test_openapi_spec_documents_every_public_path_and_the_error_envelope(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    paths = set(spec["paths"])
    assert {"/v1/products", "/v1/products/{sku}", "/v1/reservations", "/v1/reservations/{reservation_id}",
            "/v1/reservations/{reservation_id}/checkout", "/v1/orders", "/v1/orders/{order_id}",
            "/v1/payments/webhook", "/v1/admin/products/{sku}", "/v1/admin/products/{sku}/stock",
            "/v1/admin/products/{sku}/holds", "/v1/admin/reconcile"} <= paths
    create = spec["paths"]["/v1/reservations"]["post"]
    assert {"201", "409", "422", "429", "503"} <= set(create["responses"])
    assert spec["components"]["schemas"]["ErrorOut"]["required"] == ["error"]
    assert {"storefrontKey", "userJwt", "adminKey"} <= set(spec["components"]["securitySchemes"])


def test_docs_page_loads_its_assets_from_this_server(client):
    page = client.get("/docs").get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(src.startswith("/docs/assets/") for src in sources), sources
    for src in sources:
        asset = client.get(src)
        assert asset.status_code == 200 and len(asset.data) > 1000, src


def test_request_id_is_accepted_echoed_and_generated(client):
    given = client.get("/livez", headers={"X-Request-ID": "req-123.abc"})
    assert given.headers["X-Request-ID"] == "req-123.abc"
    generated = client.get("/livez").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    unsafe = client.get("/livez", headers={"X-Request-ID": "bad id\twith spaces"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe)


def test_each_request_logs_one_json_line_with_its_request_id(client, api_inv, capsys):
    make_product(api_inv, stock=0)
    capsys.readouterr()
    client.post("/v1/reservations", json={"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}]},
                headers={**SF, "X-Request-ID": "trace-42"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) == 1
    line = requests[0]
    assert (line["request_id"], line["method"], line["path"], line["status"], line["error"]) == (
        "trace-42", "POST", "/v1/reservations", 409, "sold_out")
    assert line["duration_ms"] >= 0 and line["level"] == "info" and line["timestamp"]


def test_unknown_route_is_404_and_wrong_method_is_405_in_the_envelope(client):
    missing = client.get("/v1/nothing-here", headers=SF)
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = client.put("/v1/products", headers=SF)
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]


def test_oversized_body_is_413(client):
    response = client.post("/v1/reservations", data=b"{" + b" " * 70_000 + b"}",
                           headers={**SF, "Content-Type": "application/json"})
    assert response.status_code == 413 and error_of(response)["code"] == "payload_too_large"


def test_unexpected_failure_is_500_internal_error_without_details(api_settings, api_inv, monkeypatch):
    app = create_app(api_settings, inventory=api_inv, on_checkout=None)
    monkeypatch.setattr(api_inv.catalog, "list", lambda **_: 1 / 0)
    response = app.test_client().get("/v1/products", headers=SF)
    assert response.status_code == 500
    assert error_of(response) == {"code": "internal_error", "message": "Internal error.", "details": {}}


@pytest.mark.parametrize("path", ["/v1/products", "/v1/products/HOT"])
def test_product_reads_come_from_redis_alone(client, api_inv, path):
    make_product(api_inv, stock=7)
    response = client.get(path, headers=SF)  # the settings' database is unreachable
    assert response.status_code == 200


def test_product_list_pages_and_product_shape(client, api_inv):
    for sku in ("A-1", "B-2", "C-3"):
        make_product(api_inv, sku, stock=2)
    first = client.get("/v1/products?limit=2", headers=SF).get_json()
    assert [p["sku"] for p in first["data"]] == ["A-1", "B-2"] and first["meta"]["next_after"] == "B-2"
    rest = client.get("/v1/products?limit=2&after=B-2", headers=SF).get_json()
    assert [p["sku"] for p in rest["data"]] == ["C-3"] and rest["meta"]["next_after"] is None
    one = client.get("/v1/products/C-3", headers=SF).get_json()["data"]
    assert set(one) == {"sku", "name", "price", "currency", "available", "sale_status", "per_user_limit",
                        "sale_starts_at", "sale_ends_at"}
    assert one["sale_status"] == "active"
    missing = client.get("/v1/products/NOPE", headers=SF)
    assert missing.status_code == 404 and error_of(missing)["code"] == "product_not_found"
    assert client.get("/v1/products?limit=0", headers=SF).status_code == 422


@pytest.mark.parametrize("error_code, remote_addr", [("sold_out", "10.0.0.7"), (None, None)])
def test_the_request_line_is_what_the_structlog_pipeline_renders(capsys, error_code, remote_addr):
    """finish() builds the request line directly; it must stay the line log.info would render."""
    observability.configure_logging("INFO")
    observability.begin("trace-7")
    try:
        capsys.readouterr()
        observability.finish("POST", "/v1/reservations", "/v1/reservations", 409, 0.0123456, remote_addr,
                             error_code, "trace-7")
        fields = {"method": "POST", "path": "/v1/reservations", "status": 409, "duration_ms": 12.346,
                  "remote_addr": remote_addr, **({"error": error_code} if error_code else {})}
        observability.log.info("request", **fields)
        direct, rendered = capsys.readouterr().out.splitlines()
    finally:
        structlog.contextvars.clear_contextvars()
    direct_doc, rendered_doc = json.loads(direct), json.loads(rendered)
    assert list(direct_doc) == list(rendered_doc)  # same keys in the same order
    assert {k: v for k, v in direct_doc.items() if k != "timestamp"} == {
        k: v for k, v in rendered_doc.items() if k != "timestamp"}
    for doc in (direct_doc, rendered_doc):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", doc["timestamp"])


def test_no_request_line_above_info(capsys):
    observability.configure_logging("WARNING")
    try:
        capsys.readouterr()
        observability.finish("POST", "/v1/reservations", "/v1/reservations", 409, 0.001, None, "sold_out", "r")
        assert capsys.readouterr().out == ""
    finally:
        observability.configure_logging("INFO")


def test_request_lines_are_written_at_once_unless_a_server_gathers_them_per_loop_turn(capsys):
    lines = observability.RequestLines()
    lines.write(b'{"n":1}\n')
    assert capsys.readouterr().out == '{"n":1}\n'
    turns: list[Any] = []
    lines.gather_per_turn(turns.append)
    lines.write(b'{"n":2}\n')
    lines.write(b'{"n":3}\n')
    assert capsys.readouterr().out == "" and len(turns) == 1  # one flush scheduled for the turn
    turns.pop()()
    assert capsys.readouterr().out == '{"n":2}\n{"n":3}\n'
    lines.write(b'{"n":4}\n')
    assert len(turns) == 1  # the next turn schedules its own flush
    lines.gather_per_turn(None)  # a server that stops gathering writes what was waiting
    assert capsys.readouterr().out == '{"n":4}\n'
    lines.write(b'{"n":5}\n')
    assert capsys.readouterr().out == '{"n":5}\n'


def test_a_gathered_line_is_dropped_not_raised_when_stdout_is_gone(monkeypatch):
    class Closed:
        def write(self, _: str) -> None:
            raise ValueError("I/O operation on closed file.")

    lines = observability.RequestLines()
    lines.gather_per_turn(lambda flush: None)
    lines.write(b"{}\n")
    monkeypatch.setattr(sys, "stdout", Closed())
    lines.flush()
    lines.flush()  # nothing left to write


@hypothesis_settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(min_value=0, max_value=20, allow_nan=False),
                          st.sampled_from([0.0005, 0.001, 0.25, 5.0])), max_size=40))
def test_observing_a_turns_latencies_at_once_records_what_one_by_one_does(amounts):
    buckets = (0.0005, 0.001, 0.25, 5.0)
    one_by_one = Histogram("h", "h", registry=CollectorRegistry(), buckets=buckets)
    together = Histogram("h", "h", registry=CollectorRegistry(), buckets=buckets)
    for amount in amounts:
        one_by_one.observe(amount)
    if amounts:
        metrics.observe_all(together, amounts)

    def samples(histogram: Histogram) -> dict[tuple[str, str], float]:
        (family,) = histogram.collect()
        return {(s.name, s.labels.get("le", "")): s.value for s in family.samples if not s.name.endswith("_created")}

    expected, got = samples(one_by_one), samples(together)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_metric_updates_apply_at_once_unless_a_server_gathers_them_per_loop_turn():
    counter = Counter("c", "c", registry=CollectorRegistry())
    histogram = Histogram("h", "h", registry=CollectorRegistry(), buckets=(0.01, 1.0))
    updates = metrics.TurnUpdates()
    updates.inc(counter)
    assert counter._value.get() == 1
    turns: list[Any] = []
    updates.gather_per_turn(turns.append)
    updates.inc(counter)
    updates.inc(counter, 2)
    updates.observe(histogram, 0.005)
    updates.observe(histogram, 0.5)
    assert counter._value.get() == 1 and histogram._sum.get() == 0
    assert len(turns) == 1  # one flush per turn, whatever was updated
    turns.pop()()
    assert counter._value.get() == 4
    assert histogram._sum.get() == pytest.approx(0.505)
    assert [bucket.get() for bucket in histogram._buckets] == [1, 1, 0]
    updates.inc(counter)
    updates.gather_per_turn(None)  # a server that stops gathering applies what was waiting
    assert counter._value.get() == 5


def test_a_scrape_applies_the_answering_workers_waiting_updates(client, api_inv):
    updates = metrics.updates
    before = metrics.RESERVATIONS_HELD._value.get()
    updates.gather_per_turn(lambda flush: None)  # a loop turn that has not ended
    try:
        updates.inc(metrics.RESERVATIONS_HELD, 3)
        assert metrics.RESERVATIONS_HELD._value.get() == before
        assert client.get("/metrics").status_code == 200
        assert metrics.RESERVATIONS_HELD._value.get() == before + 3
    finally:
        updates.gather_per_turn(None)
