"""Ceiling reference: bare WSGI app doing one reserve EVALSHA per request, nothing else."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import redis
from redis.exceptions import NoScriptError

from bench.ceiling.redis_clients import default_client, direct_evalsha, lean_client, tuned_client

DEFAULT_SCRIPT = Path(__file__).with_name("reserve.lua")
StartResponse = Callable[..., Any]


def load_reserve_script(path: str | Path = DEFAULT_SCRIPT) -> str:
    """Return the reserve Lua source (swap in flashstock's lua/reserve-*.lua here)."""
    return Path(path).read_text()


def make_client(kind: str, host: str, port: int, max_connections: int) -> tuple[redis.Redis, Callable[..., Any]]:
    """Build (client, evalsha) for a named construction from redis_clients."""
    if kind == "default":
        c = default_client(host, port)
        return c, c.evalsha
    if kind == "tuned":
        c = tuned_client(host, port, max_connections)
        return c, c.evalsha
    if kind == "lean":
        c = lean_client(host, port, max_connections)
        return c, lambda *a: direct_evalsha(c, *a)
    raise ValueError(f"unknown client kind {kind!r}")


def _reply(start_response: StartResponse, status: str, doc: dict, request_id: str = "") -> Iterable[bytes]:
    body = json.dumps(doc).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if request_id:  # echoed, as flashstock does: bench/wrk/reserve.lua times each request by it
        headers.append(("X-Request-ID", request_id))
    start_response(status, headers)
    return [body]


HOLD_TTL_MS = 120_000  # inventory.config.Settings defaults: hold_ttl_seconds, record_retention_seconds
RETENTION_MS = 86_400_000


def flashstock_reserve_source() -> str:
    """flashstock's own reserve script (lua/reserve-4+5n+m+1.lua) with its includes spliced in."""
    from inventory.scripts import load_sources

    return load_sources()["reserve"].source


def create_app(
    redis_host: str = "127.0.0.1",
    redis_port: int = 6379,
    key_prefix: str = "fsbench",
    client: str = "tuned",
    max_connections: int = 128,
    script_path: str | None = None,
    remember_sold_out: float = 0.0,
) -> Callable[[dict, StartResponse], Iterable[bytes]]:
    """gunicorn factory: 'bench.ceiling.app:create_app(redis_port=..., client="tuned")'.

    Runs exactly the Lua call inventory/reservations.py makes: flashstock's reserve script with
    KEYS = reservation record, expiry index, dirty set, global sale switch, then stock/holds/buyers/the token's
    hold bucket/index bucket of the SKU, then the token's record bucket, and
    ARGV = token, user, fingerprint, ttl ms, retention ms, 0 rate-limit buckets, '' (no other parts),
    '' (not routed through stock buckets), sku, qty
    (all keys in the SKU's partition; the script reads
    Redis's TIME itself). Nothing else
    (no auth, validation library, limits, logging or metrics). script_path swaps in another script.

    remember_sold_out=s > 0 is the best any sold-out cache can do on this stack: once the script has
    refused a SKU, the process answers 409 for it from memory for the next s seconds, with no Redis
    call, no invalidation and no fairness yield (stock never comes back during a bench sell-out; the
    harness reseeds between loads, which the short memory picks up).
    """
    from inventory.ids import new_token
    from inventory.keys import KeySpace
    from inventory.part_calls import fingerprint

    source = load_reserve_script(script_path) if script_path else flashstock_reserve_source()
    keys = KeySpace(key_prefix)
    r, evalsha = make_client(client, redis_host, redis_port, max_connections)
    sha = {"value": r.script_load(source)}
    sold_out_until: dict[str, float] = {}

    def reserve(user_id: str, sku: str, qty: int) -> list:
        part = keys.of_sku(sku)
        token = keys.token_in(new_token(), part.index)
        line = part.sku(sku)
        argv = (10, part.reservation(token), part.expiries, part.dirty, part.sale_switch, line.stock, line.holds,
                line.buyers, line.bucket_of(token), line.index, part.record_bucket(token), token, user_id, fingerprint(user_id, [(sku, qty)], HOLD_TTL_MS), HOLD_TTL_MS,
                RETENTION_MS, 0, "", "", sku, qty)
        try:
            return evalsha(sha["value"], *argv)
        except NoScriptError:  # server restarted or SCRIPT FLUSH: load once more and retry
            sha["value"] = r.script_load(source)
            return evalsha(sha["value"], *argv)

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        rid = environ.get("HTTP_X_REQUEST_ID", "")
        if environ["REQUEST_METHOD"] != "POST" or environ["PATH_INFO"] != "/v1/reservations":
            return _reply(start_response, "404 Not Found", {"error": {"code": "not_found"}}, rid)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            doc = json.loads(environ["wsgi.input"].read(length))
            user_id = doc["user_id"]
            (item,) = doc["items"]  # the ceiling handles exactly one item
            sku, qty = item["sku"], item["qty"]
            if not isinstance(qty, int) or qty <= 0 or not isinstance(sku, str):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return _reply(start_response, "400 Bad Request", {"error": {"code": "invalid_request"}}, rid)
        if sold_out_until and time.monotonic() < sold_out_until.get(sku, 0.0):
            return _reply(start_response, "409 Conflict",
                          {"error": {"code": "sold_out", "message": "not enough stock", "sku": sku}}, rid)
        reply = reserve(str(user_id), sku, qty)
        code = int(reply[0])
        if code == -3 and remember_sold_out > 0:
            sold_out_until[sku] = time.monotonic() + remember_sold_out
        if code == -3:
            return _reply(
                start_response,
                "409 Conflict",
                {"error": {"code": "sold_out", "message": "not enough stock", "sku": sku}},
                rid,
            )
        if code != 0:
            return _reply(start_response, "422 Unprocessable Entity", {"error": {"code": f"reply_{code}"}}, rid)
        return _reply(
            start_response,
            "201 Created",
            {"data": {"user_id": user_id, "items": [{"sku": sku, "qty": qty}], "expires_ms": int(reply[1])}},
            rid,
        )

    return app
