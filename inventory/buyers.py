"""Reading buyers' units: a light SKU counts them in its stock hash, a busy one in its buyers hash.

lua/includes/common.lua (add_buyer_units) writes them: a SKU with at most 16 buyers keeps each
user's units as a stock-hash field 'b:<user>' ('bn' = how many), because a buyers key of its own
would cost every SKU with one hold ~100 B; the 17th buyer moves all to the buyers hash ('bn' = 'h').
A SKU counted before that change keeps its buyers hash and no 'bn' until its next new buyer.
A light hold taken since light holds carry their units counts in no buyer field: its units are added
from the hold itself (inventory/holds.py, carried_units).
"""

from __future__ import annotations

from typing import Any

from inventory.context import text
from inventory.holds import carried_units
from inventory.keys import SkuKeys

LIGHT_PREFIX = "b:"  # stock-hash field prefix of a light buyer's count
MODE_FIELD = "bn"  # stock-hash field: number of light buyers, or 'h' once every count is in the buyers hash
HEAVY = "h"


def merge_buyers(stock: dict[Any, Any], buyers: dict[Any, Any]) -> dict[str, int]:
    """user -> units from a stock hash and a buyers hash as HGETALL returned them."""
    units = {text(user): int(count) for user, count in buyers.items()}
    for user, carried in carried_units(stock).items():
        units[user] = units.get(user, 0) + carried
    for name, count in stock.items():
        field = text(name)
        if field.startswith(LIGHT_PREFIX):
            user = field[len(LIGHT_PREFIX):]
            units[user] = units.get(user, 0) + int(count)
    return units


def queue_buyer_read(pipe: Any, keys: SkuKeys) -> None:
    """Queue the two reads read_buyers' answer is made of (stock hash, buyers hash)."""
    pipe.hgetall(keys.stock)
    pipe.hgetall(keys.buyers)


def read_buyers(client: Any, keys: SkuKeys) -> dict[str, int]:
    """Every buyer's units of one SKU, wherever they are counted (one round trip, one slot)."""
    pipe = client.pipeline(transaction=False)
    queue_buyer_read(pipe, keys)
    stock, buyers = pipe.execute()
    return merge_buyers(stock, buyers)


def queue_units_of(pipe: Any, keys: SkuKeys, user: str) -> None:
    """Queue the two reads units_of's answer is made of."""
    pipe.hget(keys.buyers, user)
    pipe.hgetall(keys.stock)


def units_of(user: str, in_buyers: Any, stock: dict[Any, Any]) -> int:
    """One user's units from the replies queue_units_of asked for."""
    fields = {text(name): value for name, value in stock.items()}
    return int(in_buyers or 0) + int(fields.get(LIGHT_PREFIX + user) or 0) + carried_units(fields).get(user, 0)
