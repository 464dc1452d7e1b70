"""POST /v1/reservations on the WSGI hot path answers exactly as the Flask view does, without Flask."""

from __future__ import annotations

import gc
import json
import time
import types
from pathlib import Path
from typing import Any

import pytest
import redis

from api import create_app
from api.hotpath import FastReserve
from tests.api.conftest import ADMIN, SF, error_of, user_token
from tests.helpers import make_product

ROOT = Path(__file__).resolve().parents[2]
ITEM = [{"sku": "HOT", "qty": 1}]
# (headers, body or raw bytes): every kind of answer the endpoint gives.
CASES: dict[str, tuple[dict[str, str], Any]] = {
    "held": (SF, {"user_id": "alice", "items": ITEM}),
    "held_with_jwt": ({"Authorization": f"Bearer {user_token('bob')}"}, {"items": ITEM}),
    "sold_out": (SF, {"user_id": "carol", "items": [{"sku": "HOT", "qty": 50}]}),
    "unknown_sku": (SF, {"user_id": "dave", "items": [{"sku": "NOPE", "qty": 1}]}),
    "invalid_fields": (SF, {"user_id": "", "items": [{"sku": "HOT", "qty": 0}], "extra": 1}),
    "no_user_with_storefront_key": (SF, {"items": ITEM}),
    "jwt_user_mismatch": ({"Authorization": f"Bearer {user_token('bob')}"}, {"user_id": "eve", "items": ITEM}),
    "no_credentials": ({}, {"user_id": "alice", "items": ITEM}),
    "wrong_key": ({"X-API-Key": "nope"}, {"user_id": "alice", "items": ITEM}),
    "admin_key": (ADMIN, {"user_id": "alice", "items": ITEM}),
    "not_json": ({**SF, "Content-Type": "application/json"}, b"{not json"),
    "form_body": ({**SF, "Content-Type": "application/x-www-form-urlencoded"}, b"user_id=alice"),
    "empty_body": ({**SF, "Content-Type": "application/json"}, b""),
}


def _answer(app: Any, headers: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
    client = app.test_client()
    if isinstance(body, bytes):
        response = client.post("/v1/reservations", data=body, headers=headers)
    else:
        response = client.post("/v1/reservations", json=body, headers=headers)
    doc = response.get_json()
    if doc and "data" in doc:  # ids and times differ between two holds
        doc["data"] = {k: v for k, v in doc["data"].items() if k not in ("id", "created_at", "expires_at")}
    kept = {k: v for k, v in response.headers.items() if k in ("Content-Type", "WWW-Authenticate", "Retry-After")}
    return response.status_code, doc, kept


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_hot_path_answers_like_the_flask_view(case, api_settings, api_inv):
    make_product(api_inv, stock=10)
    headers, body = CASES[case]
    hot = create_app(api_settings.with_overrides(api_fast_path=True), inventory=api_inv, on_checkout=None)
    flask = create_app(api_settings.with_overrides(api_fast_path=False), inventory=api_inv, on_checkout=None)
    assert isinstance(hot.wsgi_app, FastReserve) and not isinstance(flask.wsgi_app, FastReserve)
    assert _answer(hot, headers, body) == _answer(flask, headers, body)


def test_plain_reservations_never_reach_flask_and_keyed_ones_do(api_settings, api_inv, monkeypatch):
    make_product(api_inv, stock=10)
    app = create_app(api_settings.with_overrides(api_fast_path=True), inventory=api_inv, on_checkout=None)
    reached: list[str] = []
    downstream = app.wsgi_app.downstream

    def flask_app(environ, start_response):
        reached.append(environ["PATH_INFO"])
        return downstream(environ, start_response)

    monkeypatch.setattr(app.wsgi_app, "downstream", flask_app)
    client = app.test_client()
    body = {"user_id": "alice", "items": ITEM}
    assert client.post("/v1/reservations", json=body, headers=SF).status_code == 201
    assert reached == []
    keyed = client.post("/v1/reservations", json=body, headers={**SF, "Idempotency-Key": "k1"})
    assert keyed.status_code == 201 and reached == ["/v1/reservations"]
    assert client.get("/v1/products", headers=SF).status_code == 200
    assert reached == ["/v1/reservations", "/v1/products"]


def test_redis_down_is_503_with_retry_after(api_settings, api_inv, monkeypatch):
    app = create_app(api_settings.with_overrides(api_fast_path=True), inventory=api_inv, on_checkout=None)

    def down(*_: Any, **__: Any) -> Any:
        raise redis.exceptions.ConnectionError("connection refused")

    monkeypatch.setattr(api_inv.reservations, "reserve", down)
    response = app.test_client().post("/v1/reservations", json={"user_id": "a", "items": ITEM}, headers=SF)
    assert response.status_code == 503 and error_of(response)["code"] == "unavailable"
    assert response.headers["Retry-After"] == "1"


def test_an_unexpected_failure_is_500_internal_error_and_logged(api_settings, api_inv, monkeypatch, capsys):
    app = create_app(api_settings.with_overrides(api_fast_path=True), inventory=api_inv, on_checkout=None)
    monkeypatch.setattr(api_inv.reservations, "reserve", lambda *_, **__: 1 / 0)
    response = app.test_client().post("/v1/reservations", json={"user_id": "a", "items": ITEM},
                                      headers={**SF, "X-Request-ID": "trace-500"})
    assert response.status_code == 500
    assert error_of(response) == {"code": "internal_error", "message": "Internal error.", "details": {}}
    assert response.headers["X-Request-ID"] == "trace-500"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any("ZeroDivisionError" in line.get("exception", "") for line in lines)
    assert [line["status"] for line in lines if line["event"] == "request"] == [500]


def test_answers_that_need_no_io_let_other_connections_run(api_settings, api_inv, monkeypatch):
    """A cached sold-out or a refused request yields once; an answer that waited on Redis does not."""
    from api import hotpath

    make_product(api_inv, stock=1)
    app = create_app(api_settings.with_overrides(api_fast_path=True), inventory=api_inv, on_checkout=None)
    yields: list[int] = []
    monkeypatch.setattr(hotpath, "let_others_run", lambda: yields.append(1))
    client = app.test_client()

    def post(body: Any, headers: dict[str, str] = SF) -> int:
        before = len(yields)
        status = client.post("/v1/reservations", json=body, headers=headers).status_code
        return status * 10 + (len(yields) - before)

    assert post({"user_id": "a", "items": ITEM}) == 2010  # held: waited on Redis
    cache = api_inv.reservations.soldout
    for _ in range(250):  # the listener subscribes in the background
        if cache.listening:
            break
        time.sleep(0.02)
    assert post({"user_id": "b", "items": ITEM}) == 4090  # sold out, learned from Redis
    assert post({"user_id": "c", "items": ITEM}) == 4091  # sold out from this process's memory
    assert post({"user_id": "", "items": ITEM}) == 4221  # refused before any I/O
    assert post({"user_id": "d", "items": ITEM}, {}) == 4011


def test_the_gunicorn_worker_freezes_what_the_app_loaded():
    import gc

    from api.serving import gunicorn_settings
    from inventory.config import Settings

    options = gunicorn_settings(Settings())
    gc.unfreeze()
    try:
        options["post_worker_init"](None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_connection_yields_after_a_burst_of_answers_without_io_not_after_each(monkeypatch):
    """The same greenlet answering BURST times in a row yields once; answers by turns never yield."""
    from api import hotpath

    slept: list[float] = []
    runner = {"id": 1}
    monkeypatch.setattr(hotpath.time, "sleep", slept.append)
    monkeypatch.setattr(hotpath.threading, "get_ident", lambda: runner["id"])
    monkeypatch.setattr(hotpath, "_turn", {"runner": 0, "answers": 0})

    for _ in range(3 * hotpath.BURST):
        hotpath.let_others_run()
    assert slept == [0, 0, 0]

    slept.clear()
    for turn in range(10 * hotpath.BURST):  # two connections taking turns: each answer follows a switch
        runner["id"] = 2 + turn % 2
        hotpath.let_others_run()
    assert slept == []


def test_cached_refusals_reuse_one_body_per_distinct_answer(api_settings, api_inv):
    """A refusal from the sold-out cache is built once per SKU, quantity and waitlist state, and is
    byte for byte the body the view gives; another quantity or another SKU gets its own."""
    make_product(api_inv, stock=1)
    make_product(api_inv, sku="COLD", stock=0)
    app = create_app(api_settings.with_overrides(api_fast_path=True), inventory=api_inv, on_checkout=None)
    client, middleware = app.test_client(), app.wsgi_app
    assert client.post("/v1/reservations", json={"user_id": "a", "items": ITEM}, headers=SF).status_code == 201
    cache = api_inv.reservations.soldout
    for _ in range(250):  # the listener subscribes in the background
        if cache.listening:
            break
        time.sleep(0.02)

    def refusal(user: str, sku: str, qty: int) -> bytes:
        response = client.post("/v1/reservations", json={"user_id": user, "items": [{"sku": sku, "qty": qty}]},
                               headers=SF)
        assert response.status_code == 409
        return response.get_data()

    for sku in ("HOT", "COLD"):
        refusal("learn", sku, 1)  # the first refusal comes from the script and teaches the cache
    answered = cache.answered
    bodies = {(sku, qty): {refusal(f"u{i}", sku, qty) for i in range(3)} for sku in ("HOT", "COLD") for qty in (1, 2)}
    assert cache.answered == answered + 12  # every one of them from memory
    assert all(len(same) == 1 for same in bodies.values())
    assert len({body for same in bodies.values() for body in same}) == 4
    assert len(middleware._refusals) == 4  # noqa: SLF001
    flask = create_app(api_settings.with_overrides(api_fast_path=False), inventory=api_inv, on_checkout=None)
    view = flask.test_client().post("/v1/reservations", json={"user_id": "v", "items": [{"sku": "HOT", "qty": 2}]},
                                    headers=SF)
    assert json.loads(next(iter(bodies[("HOT", 2)]))) == view.get_json()


REQUEST_PATH_FRAMES = {"__call__", "_answer", "_reserve", "hold", "reserve", "refuse", "load"}


def test_hot_path_answers_leave_no_reference_cycles_through_its_frames(api_settings, api_inv):
    """An exception held in a local of a frame its traceback holds is a reference cycle, which only the
    cyclic collector frees: at a stampede's rate, cached sold-out answers made a worker run full
    collections of 10-80 ms every 0.3-0.5 s (BENCHMARKS.md, "Issue 13, eighth pass")."""
    make_product(api_inv, stock=1)
    app = create_app(api_settings.with_overrides(api_fast_path=True), inventory=api_inv, on_checkout=None)
    client = app.test_client()
    assert client.post("/v1/reservations", json={"user_id": "a", "items": ITEM}, headers=SF).status_code == 201
    for _ in range(250):  # the listener subscribes in the background
        if api_inv.reservations.soldout.listening:
            break
        time.sleep(0.02)
    assert client.post("/v1/reservations", json={"user_id": "b", "items": ITEM}, headers=SF).status_code == 409
    # invalid_fields is left out: marshmallow's nested load keeps its own error in a local of the frame
    # that raised it (a cycle inside marshmallow, on bad input only); a top-level 422 is in.
    answers = [CASES[case] for case in ("sold_out", "unknown_sku", "wrong_key", "not_json")]
    answers += [(SF, {"user_id": "c", "items": []})]
    answers += [(SF, {"user_id": "c", "items": ITEM})] * 3  # cached sold-out answers
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        statuses = [_answer(app, headers, body)[0] for headers, body in answers]
        gc.collect()
        ours = [(frame.f_code.co_filename, frame.f_code.co_name) for frame in gc.garbage
                if isinstance(frame, types.FrameType) and frame.f_code.co_name in REQUEST_PATH_FRAMES
                and frame.f_code.co_filename.startswith((str(ROOT / "api"), str(ROOT / "inventory")))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert statuses == [409, 404, 401, 400, 422, 409, 409, 409]
    assert api_inv.reservations.soldout.answered >= 3
    assert ours == [], "\n".join(map(str, ours))
