"""Input checks shared by every adapter, done before any script runs."""

from __future__ import annotations

import re
from typing import Iterable, Mapping

from inventory.errors import InvalidArgument

# Checked with fullmatch (is_sku, is_user_id): with match, `$` also accepts a trailing newline. The
# patterns keep `^...$` because the OpenAPI spec publishes them and JSON Schema regexes have no `\Z`.
SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
USER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+=-]{0,127}$")
MAX_QTY = 1_000_000
MAX_LINES = 50
# Visible ASCII only: the id is written into outbox entries and log lines verbatim.
REQUEST_ID_PATTERN = re.compile(r"[!-~]{0,128}")


def is_sku(value: object) -> bool:
    return isinstance(value, str) and SKU_PATTERN.fullmatch(value) is not None


def is_user_id(value: object) -> bool:
    return isinstance(value, str) and USER_PATTERN.fullmatch(value) is not None


def check_sku(sku: str) -> str:
    if not is_sku(sku):
        raise InvalidArgument("SKU must be 1-64 characters of letters, digits, '.', '_' or '-'.", field="sku", value=sku)
    return sku


def check_user(user_id: str) -> str:
    if not is_user_id(user_id):
        raise InvalidArgument("user_id must be 1-128 characters of letters, digits and ._@:+=-", field="user_id")
    return user_id


def check_request_id(request_id: str) -> str:
    """A request id for the outbox: '' (none) or 1-128 visible ASCII characters."""
    if not isinstance(request_id, str) or not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise InvalidArgument("request_id must be at most 128 visible ASCII characters.", field="request_id")
    return request_id


def check_qty(qty: int, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(qty, bool) or not isinstance(qty, int) or not low <= qty <= MAX_QTY:
        raise InvalidArgument(f"qty must be an integer from {low} to {MAX_QTY}.", field="qty", value=qty)
    return qty


def check_lines(items: Mapping[str, int] | Iterable[tuple[str, int]], *, allow_zero: bool = False) -> list[tuple[str, int]]:
    """(sku, qty) pairs, validated; duplicate SKUs and empty lists are refused."""
    if isinstance(items, list) and all(type(p) is tuple for p in items):
        pairs = items  # the API's (sku, qty) tuples: no copy
    else:
        pairs = list(items.items()) if isinstance(items, Mapping) else [tuple(p) for p in items]
    if not 1 <= len(pairs) <= MAX_LINES:
        raise InvalidArgument(f"Give 1 to {MAX_LINES} lines.", field="items")
    seen: set[str] = set()
    for sku, qty in pairs:
        check_sku(sku)
        check_qty(qty, allow_zero=allow_zero)
        if sku in seen:
            raise InvalidArgument("Each SKU may appear once.", field="items", sku=sku)
        seen.add(sku)
    return pairs  # type: ignore[return-value]


def check_non_negative(value: int, field: str, *, upper: int = 10**12) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
        raise InvalidArgument(f"{field} must be an integer from 0 to {upper}.", field=field, value=value)
    return value
