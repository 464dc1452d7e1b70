"""Reading open holds: a light SKU keeps them in its stock hash, a busy one in its holds zset.

lua/includes/common.lua (hold_put and the helpers after it) writes them: a SKU with at most 16
holds keeps each as a stock-hash field 'h:<token>' = '<expires ms | inf>|<qty>|<user>' ('hn' = how
many, 'he' = a bound at or before the earliest expiry), because a holds key of its own would cost
every SKU with one hold ~150 B; the 17th hold, or the waitlist's pool, moves all to the zset
('hn' = 'z'), whose members are '<token>|<qty>|<user>' scored by expiry.
"""

from __future__ import annotations

from typing import Any, Mapping

from inventory.context import text

HOLD_PREFIX = "h:"  # stock-hash field prefix of a light hold
MODE_FIELD = "hn"  # number of light holds, or 'z' once every hold is in the holds zset
BOUND_FIELD = "he"  # at or before the earliest light hold's expiry (ms)
IN_ZSET = "z"
INF = float("inf")


def light_holds(fields: Mapping[Any, Any]) -> list[tuple[str, int, str, float]]:
    """(token, qty, user, expires ms or inf) of every light hold in a stock hash, soonest first."""
    holds = []
    for name, value in fields.items():
        field = text(name)
        if field.startswith(HOLD_PREFIX):
            expires, qty, user = text(value).split("|", 2)
            holds.append((field[len(HOLD_PREFIX):], int(qty), user, INF if expires == "inf" else float(expires)))
    return sorted(holds, key=lambda hold: hold[3])


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


def merge_holds(scored_members: Any, stock: Mapping[Any, Any]) -> list[tuple[str, int, str, float]]:
    """(token, qty, user, expires) from a ZRANGE WITHSCORES of the holds zset and the stock hash, soonest first."""
    holds = [(token, int(qty), user, float(score))
             for token, qty, user, score in ((*text(m).split("|", 2), s) for m, s in scored_members)]
    return sorted(holds + light_holds(stock), key=lambda hold: hold[3])


def first_expiry(first_hold: Any, light: float | None = None) -> float | None:
    """The earliest finite expiry of a ZRANGE holds 0 0 WITHSCORES reply and a light one (None: none
    that expires: no hold, a pinned one, or only the waitlist's pool)."""
    zset = float(first_hold[0][1]) if first_hold and first_hold[0][1] != INF else None
    return earliest(zset, light if light != INF else None)


def read_open_holds(client: Any, keys: Any) -> list[tuple[str, int, str, float]]:
    """(token, qty, user, expires) of every hold of one SKU, both places, soonest first (one round trip)."""
    pipe = client.pipeline(transaction=False)
    pipe.zrange(keys.holds, 0, -1, withscores=True)
    pipe.hgetall(keys.stock)
    return merge_holds(*pipe.execute())
