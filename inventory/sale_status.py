"""Live sale status of SKUs for admins: counters, sale state, reservations per minute."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from inventory.catalog import catalog_page, product_of
from inventory.context import decode_hash
from inventory.engine import Inventory
from inventory.errors import ProductNotFound
from inventory.models import SaleState
from inventory.validation import check_sku

MINUTE_MS = 60_000


@dataclass(frozen=True)
class SkuStatus:
    """One SKU as an admin watches it during a sale."""

    sku: str
    state: SaleState
    total: int
    available: int
    held: int
    sold: int
    persisted_total: int | None  # total and sold according to the Postgres ledger (None = not known)
    persisted_sold: int | None
    open_holds: int
    reservations_per_minute: int
    version: int
    price: int
    currency: str
    per_user_limit: int
    sale_starts_at: str
    sale_ends_at: str


def reservations_per_minute(fields: Mapping[str, str], now_ms: int) -> int:
    """Sliding-window estimate from the reserve script's per-minute counters (rm, rc, rp)."""
    minute, into = divmod(now_ms, MINUTE_MS)
    counted_minute = int(fields.get("rm") or 0)
    current, previous = int(fields.get("rc") or 0), int(fields.get("rp") or 0)
    if counted_minute == minute - 1:  # nothing yet this minute: last minute's count is the previous one
        current, previous = 0, current
    elif counted_minute != minute:
        return 0
    return round(previous * (MINUTE_MS - into) / MINUTE_MS + current)


def read_status(inv: Inventory, skus: Iterable[str], *,
                persisted: Mapping[str, tuple[int, int]] | None = None) -> list[SkuStatus]:
    """Status of each SKU, pipelined; an unknown SKU raises ProductNotFound."""
    skus = [check_sku(s) for s in skus]
    pipe = inv.redis.pipeline(transaction=False)
    for sku in skus:
        part = inv.keys.of_sku(sku)
        pipe.hgetall(part.sku(sku).stock)
        pipe.zcard(part.sku(sku).holds)
        pipe.get(part.sale_switch)
    replies = pipe.execute()
    now = inv.ctx.now_ms()
    result = []
    for index, sku in enumerate(skus):
        fields, holds, switch = decode_hash(replies[3 * index]), int(replies[3 * index + 1]), replies[3 * index + 2]
        if not fields:
            raise ProductNotFound("No such product.", sku=sku)
        product = product_of(sku, fields, now, switch == b"1")
        result.append(SkuStatus(
            sku=sku, state=product.sale_state, total=product.stock.total, available=product.stock.available,
            held=product.stock.held, sold=product.stock.sold,
            persisted_total=None if persisted is None else persisted.get(sku, (0, 0))[0],
            persisted_sold=None if persisted is None else persisted.get(sku, (0, 0))[1],
            open_holds=holds, reservations_per_minute=reservations_per_minute(fields, now),
            version=product.version, price=product.price, currency=product.currency,
            per_user_limit=product.per_user_limit,
            sale_starts_at=product.sale_starts_at.isoformat() if product.sale_starts_at else "",
            sale_ends_at=product.sale_ends_at.isoformat() if product.sale_ends_at else "",
        ))
    return result


def page_of_skus(inv: Inventory, *, after: str = "", limit: int = 50) -> list[str]:
    """SKUs of the catalogue in order, a page at a time."""
    return catalog_page(inv.ctx, after, limit)


def persisted_counts(session_factory: Any, skus: list[str]) -> dict[str, tuple[int, int]]:
    """(total, sold) per SKU as the Postgres stock ledger has them."""
    from inventory.ledger import persisted

    with session_factory() as session:
        return {sku: (p.total, p.sold) for sku, p in persisted(session, skus).items()}
