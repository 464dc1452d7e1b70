"""Live sale status of SKUs for admins: counters, sale state, reservations per minute."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from inventory.buckets import Layout
from inventory.buckets import product_of as product_of_bucket
from inventory.catalog import product_of, product_page
from inventory.context import decode_hash, text
from inventory.engine import Inventory
from inventory.errors import ProductNotFound
from inventory.holds import BUCKETED_FIELD, MODE_FIELD, hold_count
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
    found = {sku: decode_hash(replies[3 * i]) for i, sku in enumerate(skus)}
    extra = _bucket_activity(inv, found, now)
    found = inv.buckets.sum_into({sku: f for sku, f in found.items() if f})
    result = []
    for index, sku in enumerate(skus):
        holds = int(replies[3 * index + 1]) + hold_count(decode_hash(replies[3 * index]))
        switch = replies[3 * index + 2]
        fields = found.get(sku)
        if not fields:
            raise ProductNotFound("No such product.", sku=sku)
        product = product_of(sku, fields, now, switch == b"1")
        more_holds, more_per_minute = extra.get(sku, (0, 0))
        result.append(SkuStatus(
            sku=sku, state=product.sale_state, total=product.stock.total, available=product.stock.available,
            held=product.stock.held, sold=product.stock.sold,
            persisted_total=None if persisted is None else persisted.get(sku, (0, 0))[0],
            persisted_sold=None if persisted is None else persisted.get(sku, (0, 0))[1],
            open_holds=holds + more_holds,
            reservations_per_minute=reservations_per_minute(fields, now) + more_per_minute,
            version=product.version, price=product.price, currency=product.currency,
            per_user_limit=product.per_user_limit,
            sale_starts_at=product.sale_starts_at.isoformat() if product.sale_starts_at else "",
            sale_ends_at=product.sale_ends_at.isoformat() if product.sale_ends_at else "",
        ))
    return result


def _bucket_activity(inv: Inventory, found: Mapping[str, Mapping[str, str]], now: int) -> dict[str, tuple[int, int]]:
    """Open holds and reservations per minute of split SKUs' other buckets (bucket 0 is read already)."""
    split = {sku: Layout.of(sku, dict(f), inv.keys.partitions).buckets[1:] for sku, f in found.items() if f.get("bk")}
    if not split:
        return {}
    pipe = inv.redis.pipeline(transaction=False)
    for names in split.values():
        for name in names:
            pipe.zcard(inv.keys.sku(name).holds)
            pipe.hmget(inv.keys.sku(name).stock, "rm", "rc", "rp", MODE_FIELD, BUCKETED_FIELD)
    replies = iter(pipe.execute())
    out = {}
    for sku, names in split.items():
        holds = per_minute = 0
        for _ in names:
            holds += int(next(replies))
            *window, mode, bucketed = next(replies)
            holds += hold_count({MODE_FIELD: mode, BUCKETED_FIELD: bucketed})
            per_minute += reservations_per_minute(
                {k: text(v) for k, v in zip(("rm", "rc", "rp"), window) if v is not None}, now)
        out[sku] = (holds, per_minute)
    return out


def page_of_skus(inv: Inventory, *, after: str = "", limit: int = 50) -> list[str]:
    """Product SKUs of the catalogue in order, a page at a time (stock buckets are not products)."""
    return product_page(inv.ctx, after, limit)


def persisted_counts(session_factory: Any, skus: list[str],
                     buckets: Mapping[str, list[str]] | None = None) -> dict[str, tuple[int, int]]:
    """(total, sold) per product as the Postgres stock ledger has them; `buckets` names the stock buckets
    of split SKUs (Layout.buckets), whose rows are summed into their product's."""
    from inventory.ledger import persisted

    names = sorted(set(skus) | {name for found in (buckets or {}).values() for name in found})
    with session_factory() as session:
        found = persisted(session, names)
    out: dict[str, tuple[int, int]] = {}
    for sku, p in found.items():
        total, sold = out.get(product_of_bucket(sku), (0, 0))
        out[product_of_bucket(sku)] = (total + p.total, sold + p.sold)
    return out
