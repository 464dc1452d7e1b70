"""Public ids: 'r_<token>' for reservations, 'o_<token>' for their orders (same token)."""

from __future__ import annotations

import hashlib
import re
import secrets
import time

_TOKEN = re.compile(r"^[0-9a-z]{10,40}$")


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_TIME_DIGITS = 9  # base 36: ms time until the year 5188
_RANDOM_DIGITS = 12  # 12 random bytes, each mapped to one of 36 characters: 62 bits
_KEY_DIGITS = 21  # base 36: 108 bits of the key's SHA-256
_RANDOM_CHARS = bytes(_DIGITS[b % 36].encode()[0] for b in range(256))  # 256 % 36 = 4: 5.165 of 5.17 bits
_time_prefix = (-1, "")  # (ms, its digits), replaced as one: tokens made in the same ms share them

# Tokens are short because each one is stored twice per open hold (its record's bucket field or key
# name, the holds member): with the 3 partition digits a token is 24 characters, so a holds member
# "<token>|<qty>|<36-character UUID user>" stays within Redis's 64-byte listpack limit and a lightly
# held SKU keeps its compact encoding (BENCHMARKS.md, memory section).


def _base36(number: int, width: int) -> str:
    """`number` as exactly `width` base-36 digits (the low ones; zero-padded)."""
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 36)
        digits.append(_DIGITS[digit])
    return "".join(reversed(digits))


def new_token() -> str:
    """Time-ordered random token: 9 base-36 digits of ms time, then 12 random characters (62 bits)."""
    global _time_prefix
    ms = time.time_ns() // 1_000_000
    cached_ms, digits = _time_prefix
    if cached_ms != ms:
        digits = _base36(ms, _TIME_DIGITS)
        _time_prefix = (ms, digits)
    return digits + secrets.token_bytes(_RANDOM_DIGITS).translate(_RANDOM_CHARS).decode()


def token_for_key(user_id: str, idempotency_key: str) -> str:
    """Deterministic token for a client's idempotency key, scoped to the user."""
    digest = hashlib.sha256(f"{user_id}\x00{idempotency_key}".encode()).digest()
    return _base36(int.from_bytes(digest[:14], "big"), _KEY_DIGITS)


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
