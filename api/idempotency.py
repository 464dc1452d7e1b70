"""`Idempotency-Key` support: the first response to a key is stored; the same request gets it back."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable

from flask import Response, request
from redis import Redis

from api.errors import ApiError, handle_inventory_error
from inventory.errors import InventoryError
from inventory.keys import KeySpace

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")

HEADER_DOC = {
    "in": "header", "name": HEADER, "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[\x21-\x7e]+$"},
    "description": "Same key and body: the stored original response is returned. "
                   "Same key, different body: 422 idempotency_key_reused.",
}


def header_key() -> str | None:
    """The request's Idempotency-Key, validated; None when absent."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    if not _KEY_PATTERN.match(value):
        raise ApiError("invalid_request", "The request is not valid.",
                       fields={HEADER: ["1-255 visible ASCII characters."]})
    return value


def fingerprint(operation: str, user_id: str, args: Any) -> str:
    """What makes two requests 'the same': operation (method + path), user and the validated body."""
    body = json.dumps([operation, user_id, args], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


class IdempotencyStore:
    """Stored responses in Redis under the deployment's key prefix, with a TTL."""

    def __init__(self, redis: Redis, keys: KeySpace, ttl_seconds: int) -> None:
        self.redis, self.keys, self.ttl = redis, keys, ttl_seconds

    def record_key(self, scope: str, key: str) -> str:
        digest = hashlib.sha256(f"{scope}\x00{key}".encode()).hexdigest()[:40]
        return self.keys.scoped(f"idem:{digest}")

    def replay(self, raw: bytes | None, print_: str) -> Response | None:
        """The stored response for a record, 422 if the key was used for another request, else None."""
        if raw is None:
            return None
        record = json.loads(raw)
        if record["fp"] != print_:
            raise ApiError("idempotency_key_reused",
                           "This Idempotency-Key was already used with a different request.")
        response = Response(record["body"], status=record["status"], mimetype="application/json")
        response.headers[REPLAYED_HEADER] = "true"
        return response

    def save(self, record_key: str, print_: str, response: Response) -> None:
        record = {"fp": print_, "status": response.status_code, "body": response.get_data(as_text=True)}
        self.redis.set(record_key, json.dumps(record, separators=(",", ":")), ex=self.ttl, nx=True)

    def run(self, record_key: str, print_: str, produce: Callable[[], Response]) -> Response:
        """Replay a stored response, or produce one and store it (domain errors included; 429 and 5xx,
        which say "try again later", never)."""
        replayed = self.replay(self.redis.get(record_key), print_)
        if replayed is not None:
            return replayed
        try:
            response = produce()
        except InventoryError as error:
            response = handle_inventory_error(error)
        if response.status_code < 500 and response.status_code != 429:
            self.save(record_key, print_, response)
        return response
