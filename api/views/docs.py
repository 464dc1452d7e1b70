"""Shared OpenAPI documentation bits for the views."""

from __future__ import annotations

from typing import Any, Callable

from flask_smorest import Blueprint

from api.schemas import ErrorOut

_DESCRIPTIONS = {
    400: "Malformed request (e.g. body is not JSON): bad_request.",
    401: "Missing or invalid credentials: unauthorized.",
    403: "Credentials valid but not allowed here: forbidden.",
    404: "Not found (another user's reservation or order is not found too).",
    409: "Conflict with the current state (sold_out, limit_exceeded, sale_not_active, ...).",
    413: "Body too large: payload_too_large.",
    422: "Invalid input: invalid_request / invalid_argument / idempotency_key_reused.",
    429: "Rate limited: rate_limited; retry after Retry-After seconds.",
    503: "Inventory store unreachable: unavailable; retry after Retry-After seconds.",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                "schema": {"type": "string"}}}


def errors(blp: Blueprint, *statuses: int) -> Callable[[Any], Any]:
    """Document error responses (all share the error envelope) on a view."""

    def decorator(func: Any) -> Any:
        for status in sorted(set(statuses) | {400, 413, 503}, reverse=True):
            headers = _RETRY_AFTER if status in (429, 503) else None
            func = blp.alt_response(status, schema=ErrorOut, description=_DESCRIPTIONS.get(status),
                                    headers=headers)(func)
        return func

    return decorator
