"""One error envelope for every failure, and the one table mapping error codes to HTTP status."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import redis
import sqlalchemy.exc
from flask import Flask, Response, current_app, g, has_request_context, jsonify, request
from flask_limiter import RateLimitExceeded
from werkzeug.exceptions import HTTPException

from inventory.errors import InventoryError

RETRY_AFTER_UNAVAILABLE = "1"

# Error code -> HTTP status. Domain codes come from inventory.errors; the rest are HTTP-level.
STATUS_BY_CODE: dict[str, int] = {
    # domain (InventoryError.code)
    "invalid_argument": 422,
    "product_not_found": 404,
    "sale_not_active": 409,
    "sold_out": 409,
    "limit_exceeded": 409,
    "reservation_not_found": 404,
    "order_not_found": 404,
    "reservation_expired": 409,
    "reservation_closed": 409,
    "idempotency_key_reused": 422,
    "version_conflict": 409,
    "stock_below_committed": 409,
    "stale_read": 409,
    "product_recovering": 409,
    "buckets_changed": 409,
    "extension_limit": 409,
    "waitlist_entry_not_found": 404,
    "not_sold_out": 409,
    "already_waiting": 409,
    "waitlist_full": 409,
    "unavailable": 503,
    # HTTP level
    "bad_request": 400,
    "invalid_request": 422,
    "unauthorized": 401,
    "invalid_signature": 401,
    "forbidden": 403,
    "csrf_failed": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "event_id_reused": 409,
    "idempotency_request_in_progress": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "internal_error": 500,
}

# Werkzeug HTTPException status -> our code, for errors raised by Flask/webargs themselves.
_CODE_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                   405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
                   422: "invalid_request", 429: "rate_limited", 503: "unavailable"}

# Redis failures that mean "try again shortly": connection refused, timeouts, pool exhausted; and on a
# Redis Cluster a failover or reshard in progress: CLUSTERDOWN / MASTERDOWN, TRYAGAIN (a script whose
# keys are split between two nodes mid-migration; it did not run), redirections that did not settle
# (ClusterError "TTL exhausted"), a slot with no known owner. None of these ran the script halfway.
# Also a Redis that answers but refuses writes for a while: out of memory (maxmemory, noeviction), turned
# into a replica (READONLY), too few replicas (NOREPLICAS), a failed background save (MISCONF), busy
# running another script past busy-reply-threshold (BUSY). Redis refuses a script only at its first write
# and lets one that has written finish, so a refused call changed nothing.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.TryAgainError,
              redis.exceptions.ClusterError, redis.exceptions.SlotNotCoveredError,
              redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)
_REFUSALS_WITHOUT_A_CLASS = frozenset({"MISCONF", "NOREPLICAS", "BUSY"})  # plain ResponseErrors in redis-py

# Database failures of the same kind (only admin reconciliation and /readyz use the database).
DATABASE_DOWN = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError)


def redis_unavailable(error: BaseException) -> bool:
    """Whether this Redis error means "try again shortly" (REDIS_DOWN, or a refusal without its own class)."""
    return isinstance(error, REDIS_DOWN) or _refusal_code(error) in _REFUSALS_WITHOUT_A_CLASS


def _refusal_code(error: BaseException) -> str | None:
    """The Redis error code of a refused command ('OOM', 'READONLY', 'BUSY', ...), None for other errors."""
    if not isinstance(error, redis.exceptions.ResponseError):
        return None
    code = getattr(error, "status_code", None) or str(error).split(" ", 1)[0]
    return code if code.isupper() and code.isalpha() else None


class ApiError(Exception):
    """An HTTP-level error with a stable code; status comes from STATUS_BY_CODE."""

    def __init__(self, code: str, message: str, *, headers: dict[str, str] | None = None,
                 **details: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details
        self.headers = headers or {}


@dataclass(frozen=True)
class ErrorReply:
    """An error answer before it becomes an HTTP response (Flask's or the WSGI hot path's)."""

    code: str
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(code: str, message: str, details: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, status: int | None = None) -> ErrorReply:
    """The envelope {"error": {"code", "message", "details"}} with its status from STATUS_BY_CODE."""
    return ErrorReply(code, status or STATUS_BY_CODE.get(code, 500),
                      {"error": {"code": code, "message": message, "details": _plain(details or {})}},
                      dict(headers or {}))


def inventory_error_reply(error: InventoryError) -> ErrorReply:
    """A domain error's answer; 503 and 429 say when to retry."""
    details, headers = dict(error.details), {}
    if error.code == "unavailable":
        headers["Retry-After"] = RETRY_AFTER_UNAVAILABLE
    elif error.code == "rate_limited":
        retry_after_ms = details.pop("retry_after_ms", 1000)
        headers["Retry-After"] = str(max(1, math.ceil(int(retry_after_ms) / 1000)))
    return error_reply(error.code, error.message, details, headers)


def redis_down_reply(error: BaseException) -> ErrorReply:
    """503: the Redis error code of a refusal ('OOM', ...) or the kind of failure ('ConnectionError', ...)."""
    return error_reply("unavailable", "The inventory store is unavailable; retry shortly.",
                       {"reason": _refusal_code(error) or type(error).__name__},
                       {"Retry-After": RETRY_AFTER_UNAVAILABLE})


def to_response(reply: ErrorReply) -> Response:
    """The Flask response for an error reply (and its code noted for the request log line)."""
    if has_request_context():
        g.error_code = reply.code
    response = jsonify(reply.body)
    response.status_code = reply.status
    for name, value in reply.headers.items():
        response.headers[name] = value
    return response


def envelope(code: str, message: str, details: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None, status: int | None = None) -> Response:
    """The JSON error response: {"error": {"code", "message", "details"}}."""
    return to_response(error_reply(code, message, details, headers, status))


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def handle_inventory_error(error: InventoryError) -> Response:
    return to_response(inventory_error_reply(error))


def handle_api_error(error: ApiError) -> Response:
    return envelope(error.code, error.message, error.details, error.headers)


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    code = _CODE_BY_STATUS.get(status, "internal_error" if status >= 500 else "bad_request")
    data = getattr(error, "data", None) or {}
    details: dict[str, Any] = {}
    message = error.description or error.name
    if "messages" in data:  # webargs validation errors, by location then field
        details["fields"] = _flatten_locations(data["messages"])
        message = "The request is not valid."
    elif "message" in data:
        message = data["message"]
    if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
        details["allowed"] = sorted(error.valid_methods)  # type: ignore[attr-defined]
    headers = dict(data.get("headers") or {})
    if status == 405:
        headers.update(error.get_headers())
        headers.pop("Content-Type", None)
    return envelope(code, message, details, headers, status=status)


def _flatten_locations(messages: Any) -> Any:
    if isinstance(messages, dict) and len(messages) == 1 and next(iter(messages)) in (
            "json", "query", "headers", "view_args", "path"):
        return next(iter(messages.values()))
    return messages


def handle_rate_limited(error: RateLimitExceeded) -> Response:
    retry_after = 1
    limiter = current_app.extensions.get("flashstock_limiter")
    try:
        current = limiter.current_limit if limiter is not None else None
        if current is not None:
            retry_after = max(1, math.ceil(current.reset_at - time.time()))
    except Exception:  # the storage may be down too; 1s is a safe hint
        retry_after = 1
    return envelope("rate_limited", "Too many requests; slow down.",
                    {"limit": str(error.limit.limit)}, {"Retry-After": str(retry_after)})


def handle_redis_down(error: Exception) -> Response:
    current_app.logger.warning("redis unavailable: %s", error)
    return to_response(redis_down_reply(error))


def handle_database_down(error: Exception) -> Response:
    current_app.logger.warning("database unavailable: %s", type(error).__name__)
    return envelope("unavailable", "The database is unavailable; retry shortly.",
                    {"reason": "database"}, {"Retry-After": RETRY_AFTER_UNAVAILABLE})


def handle_unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    cause = _redis_cause(error)
    if cause is not None:
        return handle_redis_down(cause)
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return envelope("internal_error", "Internal error.", status=500)


def _redis_cause(error: BaseException | None) -> BaseException | None:
    """Redis down, possibly wrapped (limits.errors.StorageError keeps it as __cause__/storage_error)."""
    seen = 0
    while error is not None and seen < 5:
        if redis_unavailable(error):
            return error
        error = getattr(error, "storage_error", None) or error.__cause__
        seen += 1
    return None


def init_app(app: Flask) -> None:
    """Register the handlers; later registrations override flask-smorest's own HTTPException handler."""
    app.register_error_handler(InventoryError, handle_inventory_error)
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(RateLimitExceeded, handle_rate_limited)
    app.register_error_handler(HTTPException, handle_http_exception)
    for kind in REDIS_DOWN:
        app.register_error_handler(kind, handle_redis_down)
    for kind in DATABASE_DOWN:
        app.register_error_handler(kind, handle_database_down)
    app.register_error_handler(Exception, handle_unexpected)
