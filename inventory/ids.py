"""Public ids: 'r_<token>' for reservations, 'o_<token>' for their orders (same token)."""

from __future__ import annotations

import hashlib
import re
import secrets
import time

_TOKEN = re.compile(r"^[0-9a-z]{10,40}$")


def new_token() -> str:
    """Time-ordered random token: 11 hex digits of ms time, then 64 random bits."""
    return f"{time.time_ns() // 1_000_000:011x}{secrets.token_hex(8)}"


def token_for_key(user_id: str, idempotency_key: str) -> str:
    """Deterministic token for a client's idempotency key, scoped to the user."""
    return hashlib.sha256(f"{user_id}\x00{idempotency_key}".encode()).hexdigest()[:27]


def reservation_id(token: str) -> str:
    return f"r_{token}"


def order_id(token: str) -> str:
    return f"o_{token}"


def token_of(public_id: str, kind: str) -> str | None:
    """The token inside 'r_...' / 'o_...' ids, or None when the id is malformed."""
    prefix = f"{kind}_"
    if not public_id.startswith(prefix):
        return None
    token = public_id[len(prefix):]
    return token if _TOKEN.fullmatch(token) else None
