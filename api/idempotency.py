"""`Idempotency-Key` support: a key is claimed before its request runs; only final answers are kept.

Per key, in one Redis string under the deployment prefix (`KeySpace.scoped`):
  * claim: `SET key {"fp", "claim"} NX PX lease GET`, one atomic command that either claims the key
    or returns what it holds. Only the claimer runs the request;
  * the same request (same fingerprint) while the claim is live waits briefly for the result, then
    gets 409 `idempotency_request_in_progress` with Retry-After; a different request gets 422
    `idempotency_key_reused` whether the first is still running or done;
  * settle (`api/lua/settle_claim-1.lua`, compare-and-set): a final answer replaces the marker and is
    kept for the TTL; a transient one (429, 5xx, stale read) deletes the marker so a retry can run.
    Both only if the marker is still this request's, so a claimer whose lease ran out writes nothing;
  * a claimer that crashes leaves a marker that expires with its lease; the next retry then runs.
The core is idempotent underneath (reserve derives its token from user and key, checkout repeats
return the same order, payments are deduplicated per event id), so a run repeated after an expired
lease replays instead of acting twice.

Scope: Stripe keeps a key per account, the party a request acts for. A storefront key acts for many
users, so here a key belongs to the acting user (`user:<id>`, the same for a storefront key with
`user_id` and for that user's JWT; the core's reserve token is scoped the same way). Another user's
request with the same key string is a different key: it can neither claim nor poison this user's key.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from importlib import resources
from typing import Any, Callable

import structlog
from flask import Response, request
from redis import Redis
from redis.exceptions import RedisError

from api.errors import ApiError, handle_inventory_error
from inventory.errors import InventoryError
from inventory.keys import KeySpace

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
LEASE_SECONDS = 10.0  # longer than any run (Redis timeout 2 s, a few stale-read retries)
WAIT_SECONDS = 2.0  # how long a duplicate waits for the claimer's answer before 409
RETRY_AFTER_IN_PROGRESS = "1"
_POLL_FIRST, _POLL_MAX = 0.01, 0.1
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
_TRANSIENT_CODES = frozenset({"stale_read", "rate_limited", "unavailable"})
_SETTLE = resources.files("api").joinpath("lua/settle_claim-1.lua").read_text(encoding="utf-8")
log = structlog.get_logger("flashstock.api")

HEADER_DOC = {
    "in": "header", "name": HEADER, "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[\x21-\x7e]+$"},
    "description": "Scoped to the acting user. Same key and body: the stored original response is "
                   "returned (a concurrent duplicate waits for it, or gets 409 "
                   "idempotency_request_in_progress). Same key, different body: 422 idempotency_key_reused.",
}

Produce = Callable[[], Response]
IsFinal = Callable[[Response], bool]
Reused = Callable[[], ApiError]


def header_key() -> str | None:
    """The request's Idempotency-Key, validated; None when absent."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    if not _KEY_PATTERN.fullmatch(value):
        raise ApiError("invalid_request", "The request is not valid.",
                       fields={HEADER: ["1-255 visible ASCII characters."]})
    return value


def fingerprint(operation: str, user_id: str, args: Any) -> str:
    """What makes two requests 'the same': operation (method + path), user and the validated body."""
    body = json.dumps([operation, user_id, args], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def error_code(response: Response) -> str | None:
    """The envelope's error code of a JSON error response, else None."""
    if response.status_code < 400 or not response.is_json:
        return None
    body = response.get_json(silent=True)
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def is_final(response: Response) -> bool:
    """Success and domain outcomes are final; 'try again later' answers (429, 5xx, stale read) are not."""
    return response.status_code < 500 and error_code(response) not in _TRANSIENT_CODES


def key_reused() -> ApiError:
    return ApiError("idempotency_key_reused",
                    "This Idempotency-Key was already used with a different request.")


def in_progress() -> ApiError:
    return ApiError("idempotency_request_in_progress",
                    "A request with this key is still being processed; retry shortly.",
                    headers={"Retry-After": RETRY_AFTER_IN_PROGRESS})


class IdempotencyStore:
    """Claims and stored final responses in Redis under the deployment's key prefix."""

    def __init__(self, redis: Redis, keys: KeySpace, ttl_seconds: int, *,
                 lease_seconds: float = LEASE_SECONDS, wait_seconds: float = WAIT_SECONDS) -> None:
        self.redis, self.keys, self.ttl = redis, keys, ttl_seconds
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.wait_seconds = wait_seconds
        self._settle = redis.register_script(_SETTLE)

    def record_key(self, scope: str, key: str) -> str:
        """The Redis key of one (scope, Idempotency-Key) pair; hashed so any key text is safe."""
        digest = hashlib.sha256(f"{scope}\x00{key}".encode()).hexdigest()[:40]
        return self.keys.scoped(f"idem:{digest}")

    def claim(self, record_key: str, print_: str) -> str | dict[str, Any]:
        """Claim the key (returns this request's marker) or return the record already there."""
        marker = json.dumps({"fp": print_, "claim": secrets.token_hex(8)}, separators=(",", ":"))
        held = self.redis.set(record_key, marker, nx=True, px=self.lease_ms, get=True)
        return marker if held is None else json.loads(held)

    def settle(self, record_key: str, marker: str, print_: str, response: Response | None) -> bool:
        """Store a final response in place of our marker, or release it (None); False if no longer ours."""
        final = "" if response is None else json.dumps(
            {"fp": print_, "status": response.status_code, "body": response.get_data(as_text=True)},
            separators=(",", ":"))
        return int(self._settle(keys=[record_key], args=[marker, final, self.ttl * 1000])) == 1

    def run(self, record_key: str, print_: str, produce: Produce, *, final: IsFinal = is_final,
            reused: Reused = key_reused) -> Response:
        """Replay the stored response, or claim the key, produce the response and settle the claim."""
        marker = self._claim_or_replay(record_key, print_, reused)
        if isinstance(marker, Response):
            return marker
        try:
            try:
                response = produce()
            except InventoryError as error:
                response = handle_inventory_error(error)
        except BaseException:
            self._release_quietly(record_key, marker, print_)
            raise
        try:
            settled = self.settle(record_key, marker, print_, response if final(response) else None)
        except RedisError:  # the operation ran: answer it; the lease frees the key for a retry
            log.warning("idempotency_settle_failed", record=record_key, status=response.status_code)
            return response
        if not settled:
            log.warning("idempotency_claim_lost", record=record_key, status=response.status_code)
        return response

    def _claim_or_replay(self, record_key: str, print_: str, reused: Reused) -> str | Response:
        deadline, pause = time.monotonic() + self.wait_seconds, _POLL_FIRST
        while True:
            held = self.claim(record_key, print_)
            if isinstance(held, str):
                return held
            if held["fp"] != print_:
                raise reused()
            if "claim" not in held:
                return _replayed(held)
            if time.monotonic() >= deadline:
                raise in_progress()
            time.sleep(pause)  # gevent-patched under gunicorn: other requests run meanwhile
            pause = min(pause * 2, _POLL_MAX)

    def _release_quietly(self, record_key: str, marker: str, print_: str) -> None:
        try:
            self.settle(record_key, marker, print_, None)
        except RedisError:  # Redis is what failed; the lease frees the key anyway
            log.warning("idempotency_release_failed", record=record_key)


def _replayed(record: dict[str, Any]) -> Response:
    response = Response(record["body"], status=record["status"], mimetype="application/json")
    response.headers[REPLAYED_HEADER] = "true"
    return response
