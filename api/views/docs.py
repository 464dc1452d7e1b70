"""OpenAPI documentation helpers that add no per-request wrapper (each flask-smorest doc decorator
otherwise wraps the view once more, which the hot path pays for on every request)."""

from __future__ import annotations

from typing import Any, Callable

from flask_smorest import Blueprint

from api.schemas import ErrorOut

_DESCRIPTIONS = {
    400: "Malformed request (e.g. body is not JSON): bad_request.",
    401: "Missing or invalid credentials: unauthorized (webhooks: invalid_signature).",
    403: "Credentials valid but not allowed here: forbidden.",
    404: "Not found (another user's reservation or order is not found too).",
    409: "Conflict with the current state (sold_out, limit_exceeded, sale_not_active, ...; "
         "idempotency_request_in_progress with Retry-After while the same keyed request still runs).",
    413: "Body too large: payload_too_large.",
    415: "Body is not JSON: unsupported_media_type.",
    422: "Invalid input: invalid_request / invalid_argument / idempotency_key_reused.",
    429: "Rate limited: rate_limited; retry after Retry-After seconds.",
    503: "Inventory store unreachable: unavailable; retry after Retry-After seconds.",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                "schema": {"type": "string"}}}
_RETRY_AFTER_409 = {"Retry-After": {"description": "Seconds to wait before retrying "
                                                   "(idempotency_request_in_progress only).",
                                    "schema": {"type": "string"}}}
Decorator = Callable[[Any], Any]


def doc_only(*decorators: Decorator) -> Decorator:
    """Apply flask-smorest decorators for their documentation only, keeping the view unwrapped."""

    def apply(func: Any) -> Any:
        for decorator in decorators:
            func._apidoc = decorator(func)._apidoc  # noqa: SLF001 - flask-smorest's doc attribute
        return func

    return apply


def responses(blp: Blueprint, status: int, schema: Any, *errors: int, description: str | None = None,
              security: list[dict[str, list[str]]] | None = None) -> Decorator:
    """Document the success response, the error responses (one envelope) and the security of a view."""
    decorators: list[Decorator] = [blp.response(status, schema, description=description)]
    with_body = {400, 413, 415, 503}
    for code in sorted(set(errors) | with_body):
        headers = _RETRY_AFTER if code in (429, 503) else _RETRY_AFTER_409 if code == 409 else None
        decorators.append(blp.alt_response(code, schema=ErrorOut, description=_DESCRIPTIONS.get(code),
                                           headers=headers))
    if security is not None:
        decorators.append(blp.doc(security=security))
    return doc_only(*decorators)
