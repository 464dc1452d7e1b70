"""Reading open holds: a light SKU keeps them in its stock hash, a busy one in hold buckets and its zset.

lua/includes/common.lua (hold_put and the helpers after it) writes them: a SKU with at most 16
holds keeps each as a stock-hash field 'h:<token>' = '<expires ms | inf>|<qty>|<user>' ('hn' = how
many, 'he' = a bound at or before the earliest expiry), because a holds key of its own would cost
every SKU with one hold ~150 B; the 17th hold, or the waitlist's pool, moves all to the zset
('hn' = 'z'). A busy SKU's reservations then hold in the hold bucket their token picks (hashes of
nothing but such fields, listed in the zset as 'k:<n>' no later than their earliest); its other holds
are zset members '<token>|<qty>|<user>' scored by expiry.

A light hold's owner part is '~<user>', or '_' and a lower-case UUID's 16 bytes in base64url, when the
hold carries its units itself (they are in no buyer count: inventory/buyers.py adds them); a bare user
(a light hold from before that) and every hold elsewhere are counted in the buyer's count as well.
"""

from __future__ import annotations

import base64
import uuid

from typing import Any, Mapping, Sequence

from inventory.context import text
from inventory.keys import HOLD_BUCKET

HOLD_PREFIX = "h:"  # stock-hash field prefix of a light hold
MODE_FIELD = "hn"  # number of light holds, or 'z' once every hold is in the holds zset
BOUND_FIELD = "he"  # at or before the earliest light hold's expiry (ms)
BUCKETED_FIELD = "hk"  # holds in hold buckets minus the buckets' entries in the holds zset
IN_ZSET = "z"
INF = float("inf")
OWN_MARK, UUID_MARK = "~", "_"  # a light hold carrying its units: '~<user>', '_<UUID in base64url>'


def owner_of(part: str) -> tuple[str, bool]:
    """The user of a hold value's owner part, and whether the hold's units are in the buyer's count."""
    if part.startswith(UUID_MARK):
        return str(uuid.UUID(bytes=base64.urlsafe_b64decode(part[1:] + "=="))), False
    if part.startswith(OWN_MARK):
        return part[1:], False
    return part, True


def hold_fields(fields: Mapping[Any, Any]) -> list[tuple[str, int, str, float, bool]]:
    """(token, qty, user, expires ms or inf, counted in the buyer's count) of every hold field in a hash."""
    holds = []
    for name, value in fields.items():
        field = text(name)
        if field.startswith(HOLD_PREFIX):
            expires, qty, part = text(value).split("|", 2)
            user, counted = owner_of(part)
            holds.append((field[len(HOLD_PREFIX):], int(qty), user, INF if expires == "inf" else float(expires),
                          counted))
    return holds


def light_holds(fields: Mapping[Any, Any]) -> list[tuple[str, int, str, float]]:
    """(token, qty, user, expires ms or inf) of every light hold in a stock hash (or hold bucket), soonest first."""
    return sorted(((token, qty, user, expires) for token, qty, user, expires, _ in hold_fields(fields)),
                  key=lambda hold: hold[3])


def carried_units(stock: Mapping[Any, Any]) -> dict[str, int]:
    """user -> units in a stock hash's light holds that carry their units themselves (in no buyer count)."""
    units: dict[str, int] = {}
    for _token, qty, user, _expires, counted in hold_fields(stock):
        if not counted:
            units[user] = units.get(user, 0) + qty
    return units


def light_bound(raw: Any) -> float | None:
    """The 'he' field as an expiry (None: no light hold that expires)."""
    return float(text(raw)) if raw is not None else None


def earliest(*expiries: float | None) -> float | None:
    """The earliest of some expiries that are known, None if none is."""
    known = [e for e in expiries if e is not None]
    return min(known) if known else None


def light_count(raw: Any) -> int:
    """The 'hn' field as a number of light holds (0 once they are in the zset, or with none)."""
    value = text(raw) if raw is not None else ""
    return int(value) if value.isdigit() else 0


def bucket_numbers(members: Any) -> list[int]:
    """The hold buckets a holds zset lists ('k:<n>' members; with or without scores)."""
    names = (text(m[0] if isinstance(m, (tuple, list)) else m) for m in members)
    return [int(name[len(HOLD_BUCKET):]) for name in names if name.startswith(HOLD_BUCKET)]


def zset_holds(members: Any) -> list[tuple[str, int, str, float]]:
    """(token, qty, user, expires) of the holds among a ZRANGE WITHSCORES of the holds zset."""
    return [(token, int(qty), user, float(score))
            for token, qty, user, score in ((*text(m).split("|", 2), s) for m, s in members
                                            if not text(m).startswith(HOLD_BUCKET))]


def hold_count(stock: Mapping[Any, Any]) -> int:
    """What a stock hash adds to its holds zset's ZCARD to count the SKU's holds: its light holds, or
    the holds in hold buckets minus the buckets' entries in the zset ('hk')."""
    fields = {text(k): v for k, v in stock.items()}
    bucketed = fields.get(BUCKETED_FIELD)
    return light_count(fields.get(MODE_FIELD)) + (int(text(bucketed)) if bucketed is not None else 0)


def merge_holds(scored_members: Any, stock: Mapping[Any, Any],
                buckets: Sequence[Mapping[Any, Any]] = ()) -> list[tuple[str, int, str, float]]:
    """(token, qty, user, expires) from a ZRANGE WITHSCORES of the holds zset, the stock hash and the
    hold buckets' hashes, soonest first."""
    holds = zset_holds(scored_members) + light_holds(stock)
    for bucket in buckets:
        holds += light_holds(bucket)
    return sorted(holds, key=lambda hold: hold[3])


def read_buckets(client: Any, keys: Any, numbers: Sequence[int]) -> list[dict[Any, Any]]:
    """The hashes of some hold buckets of one SKU (one round trip; absent ones are empty)."""
    if not numbers:
        return []
    pipe = client.pipeline(transaction=False)
    for number in numbers:
        pipe.hgetall(keys.hold_bucket(number))
    return list(pipe.execute())


def first_expiry(first_hold: Any, light: float | None = None) -> float | None:
    """The earliest finite expiry of a ZRANGE holds 0 0 WITHSCORES reply and a light one (None: none
    that expires: no hold, a pinned one, or only the waitlist's pool)."""
    zset = float(first_hold[0][1]) if first_hold and first_hold[0][1] != INF else None
    return earliest(zset, light if light != INF else None)


def read_open_holds(client: Any, keys: Any) -> list[tuple[str, int, str, float]]:
    """(token, qty, user, expires) of every hold of one SKU, every place, soonest first (two round trips
    for a SKU with hold buckets; not one snapshot then)."""
    pipe = client.pipeline(transaction=False)
    pipe.zrange(keys.holds, 0, -1, withscores=True)
    pipe.hgetall(keys.stock)
    members, stock = pipe.execute()
    return merge_holds(members, stock, read_buckets(client, keys, bucket_numbers(members)))


def bucketed_offset(client: Any, keys: Any) -> int:
    """What the stock hash's 'hk' should be: holds in hold buckets minus the buckets listed in the holds
    zset (a stock hash rebuilt after it was lost gets it back; inventory/recovery.py)."""
    numbers = bucket_numbers(client.zrange(keys.holds, 0, -1))
    pipe = client.pipeline(transaction=False)
    for number in numbers:
        pipe.hlen(keys.hold_bucket(number))  # a bucket holds nothing but holds
    return sum(int(n) for n in pipe.execute()) - len(numbers) if numbers else 0

