"""POST /v1/reservations answered straight on WSGI: the flash-sale hot path without Flask's machinery.

During a stampede this endpoint is nearly all the traffic, and Flask's request and response objects,
hooks and error dispatch cost more CPU than the reservation itself (BENCHMARKS.md). This middleware
answers it with the same parts the Flask view uses: the authenticator, the ReserveIn schema (after
msgspec's one-pass check of the common body, api/reserve_body.py), `hold`
(rate limits counted inside the reserve script), the error table, the request log line and metrics.
Requests with an Idempotency-Key (stored-response replay) or without a Content-Length go on to the
Flask view, as does everything when Settings.api_fast_path is off.
"""

from __future__ import annotations

import threading
import time
from http import HTTPStatus
from typing import Any, Callable, Iterable

import orjson
import structlog
from flask import Flask

from api import metrics, observability
from api.auth import allowed, user_for
from api.errors import (ApiError, ErrorReply, error_reply, inventory_error_reply, redis_down_reply,
                        redis_unavailable)
from api.parsing import decode_json, load
from api.reserve_body import fast_reserve_args
from api.schemas import ReserveIn, reservation_json
from api.state import ApiState
from inventory.errors import InventoryError
from inventory.models import Reservation

PATH = "/v1/reservations"
ENDPOINT = PATH  # the metrics label Flask's url rule gives this endpoint
STOREFRONT_KINDS = ("storefront", "user")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
log = structlog.get_logger("flashstock.api")
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


MAX_REFUSAL_BODIES = 4096  # distinct cached sold-out answers kept per process (beyond that, built each time)
BURST = 2  # answers one connection may give in a row, without I/O, before it lets the others run
# (4 put the cached sold-out p99 at 64 connections above the ceiling's on a quiet box; 2 below, for the
# same throughput within the runs' spread: BENCHMARKS.md, "Issue 13, re-measured on a quiet box")
_turn = {"runner": 0, "answers": 0}


def _json(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)


def let_others_run() -> None:
    """Yield to the other connections' greenlets after BURST answers in a row that needed no I/O.

    A cached sold-out or a refused request never waits on Redis, so under gevent its greenlet would go
    straight on to the connection's next request, which a fast client has already sent: a few
    connections then get every answer and the rest wait seconds (measured: p50 0.4 ms, p99 3.6 s at
    256 connections). Patched by gevent, time.sleep(0) is one turn of the event loop, and
    threading.get_ident() names the greenlet. A yield after every such answer cost 20-60 µs of CPU
    per answer (BENCHMARKS.md), so it happens only once the same greenlet has answered BURST times
    with no other answer in between; a greenlet that went to the hub anyway has already let others run.
    """
    runner = threading.get_ident()
    if runner != _turn["runner"]:
        _turn["runner"], _turn["answers"] = runner, 1
        return
    _turn["answers"] += 1
    if _turn["answers"] >= BURST:
        _turn["answers"] = 0
        time.sleep(0)


def hold(st: ApiState, user_id: str, args: dict[str, Any], client_ip: str,
         idempotency_key: str | None = None) -> Reservation:
    """Reserve for a validated request, counting it in the user's and the IP's rate-limit buckets (a
    sold-out answer this process is sure of comes from its sold-out cache, without Redis or a count)."""
    if st.soldout is not None:
        st.soldout.ensure_started()
    try:
        held = st.inventory.reservations.reserve(
            user_id, [(item["sku"], item["qty"]) for item in args["items"]],
            ttl_seconds=args.get("ttl_seconds"), idempotency_key=idempotency_key,
            rate_limits=lambda: st.limits.buckets(user_id, client_ip))
    except InventoryError as error:
        metrics.updates.inc(metrics.reservation_outcome(error.code))
        if getattr(error, "cached", False):
            metrics.updates.inc(metrics.SOLDOUT_CACHED)
        elif getattr(error, "with_stock", False):
            metrics.updates.inc(metrics.SOLDOUT_WITH_STOCK)
        raise
    metrics.updates.inc(metrics.RESERVATIONS_HELD)
    return held


class FastReserve:
    """WSGI middleware in front of the Flask app that serves plain POST /v1/reservations itself."""

    def __init__(self, app: Flask, downstream: WSGIApp) -> None:
        self.state: ApiState = app.extensions["flashstock"]
        self.max_body = int(app.config["MAX_CONTENT_LENGTH"])
        self.downstream = downstream
        self.schema = ReserveIn()
        self._refusals: dict[tuple[Any, ...], tuple[int, bytes, str]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST"
                or "HTTP_IDEMPOTENCY_KEY" in environ or not environ.get("CONTENT_LENGTH", "").isdigit()):
            return self.downstream(environ, start_response)
        started = time.perf_counter()
        request_id = observability.request_id_for(environ.get("HTTP_X_REQUEST_ID"))
        remote_addr = environ.get("REMOTE_ADDR") or "127.0.0.1"
        # Bound for this request's log lines and undone after it: cheaper than clearing every context
        # variable before and after, and every path that binds more (the Flask views) clears its own.
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            status, body, headers, code = self._answer(environ, remote_addr)
            start_response(_STATUS_LINES[status], [
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                ("X-Request-ID", request_id), *headers.items()])
            observability.finish("POST", ENDPOINT, PATH, status, time.perf_counter() - started, remote_addr, code,
                                 request_id)
        finally:
            structlog.contextvars.reset_contextvars(**bound)
        return [body]

    def _answer(self, environ: dict[str, Any], remote_addr: str) -> tuple[int, bytes, dict[str, str], str | None]:
        """Status, body, extra headers and error code of the answer to one reserve request."""
        try:
            held = self._reserve(environ, remote_addr)
            return 201, _json({"data": reservation_json(held)}), {}, None
        except Exception as error:  # noqa: BLE001 - every failure becomes the documented envelope
            if getattr(error, "cached", False):
                status, body, code = self._cached_refusal(error)
                let_others_run()
                return status, body, {}, code
            reply = self._error_reply(error, environ)
            if isinstance(error, ApiError):
                let_others_run()
            return reply.status, _json(reply.body), reply.headers, reply.code

    def _reserve(self, environ: dict[str, Any], remote_addr: str) -> Reservation:
        st = self.state
        principal = allowed(st.auth.authenticate_headers(environ.get("HTTP_X_API_KEY"),
                                                         environ.get("HTTP_AUTHORIZATION", "")),
                            STOREFRONT_KINDS)
        length = int(environ["CONTENT_LENGTH"])
        if length > self.max_body:
            raise ApiError("payload_too_large", "The data value transmitted exceeds the capacity limit.")
        raw, content_type = environ["wsgi.input"].read(length), environ.get("CONTENT_TYPE")
        args = fast_reserve_args(raw, content_type) or load(self.schema, decode_json(raw, content_type))
        return hold(st, user_for(principal, args.get("user_id")), args, remote_addr)

    def _cached_refusal(self, error: InventoryError) -> tuple[int, bytes, str]:
        """The answer to a refusal from the sold-out cache: during a stampede the same few bodies
        (one per SKU, quantity and waitlist state) over and over, so each is built once."""
        key = (error.code, error.message, *error.details.items())
        try:
            answer = self._refusals.get(key)
        except TypeError:  # a detail that is not hashable: not kept
            key, answer = (), None
        if answer is None:
            reply = inventory_error_reply(error)
            answer = (reply.status, _json(reply.body), reply.code)
            if not key or reply.headers or len(self._refusals) >= MAX_REFUSAL_BODIES:
                return answer
            self._refusals[key] = answer
        return answer

    @staticmethod
    def _error_reply(error: Exception, environ: dict[str, Any]) -> ErrorReply:
        if isinstance(error, ApiError):
            return error_reply(error.code, error.message, error.details, error.headers)
        if isinstance(error, InventoryError):
            return inventory_error_reply(error)
        if redis_unavailable(error):
            log.warning("redis unavailable", error=str(error))
            return redis_down_reply(error)
        log.exception("unhandled error", method="POST", path=environ.get("PATH_INFO"))
        return error_reply("internal_error", "Internal error.", status=500)
