"""A short flash sale through the core: many concurrent buyers, one hot SKU."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from inventory.engine import Inventory
from inventory.errors import InventoryError, ProductNotFound

# The embedded server's demo catalogue: (sku, name, price in cents, stock, per-user limit)
DEMO_PRODUCTS = (
    ("DEMO-HOT", "Flash-sale headphones", 4999, 100, 1),
    ("DEMO-TEE", "Launch-day T-shirt", 1999, 500, 3),
    ("DEMO-MUG", "Collector's mug", 1299, 50, 2),
)


def seed_demo_products(inventory: Inventory) -> list[str]:
    """Create the demo products that do not exist yet (existing ones and their stock are left alone)."""
    created = []
    for sku, name, price, stock, limit in DEMO_PRODUCTS:
        try:
            inventory.catalog.get(sku)
            continue
        except ProductNotFound:
            pass
        inventory.catalog.configure(sku, name=name, price=price, currency="USD", per_user_limit=limit)
        inventory.catalog.adjust_stock(sku, set_total=stock, reason="seed")
        created.append(sku)
    return created


@dataclass(frozen=True)
class DemoReport:
    """What the demo sale did."""

    sku: str
    stock: int
    buyers: int
    outcomes: dict[str, int]
    paid: int
    payment_failed: int
    available_after: int
    sold_after: int
    seconds: float


def run_demo_sale(inv: Inventory, *, sku: str = "DEMO-HOT", stock: int = 100, buyers: int = 1000,
                  threads: int = 32) -> DemoReport:
    """Seed one SKU, let `buyers` users race for it, check out and pay the winners (every 10th fails)."""
    inv.catalog.configure(sku, name="Flash-sale headphones", price=4999, currency="USD", per_user_limit=1)
    current = inv.catalog.get(sku).stock
    inv.catalog.adjust_stock(sku, set_total=current.held + current.sold + stock, reason="seed")

    def buy(n: int) -> str:
        user = f"buyer-{n}"
        try:
            held = inv.reservations.reserve(user, {sku: 1})
            order = inv.reservations.checkout(held.id, user_id=user)
            result = "failed" if n % 10 == 0 else "paid"
            inv.reservations.record_payment(event_id=f"demo-{order.id}", result=result, order_id=order.id)
            return result
        except InventoryError as error:
            return error.code

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = Counter(pool.map(buy, range(buyers)))
    elapsed = time.perf_counter() - started
    after = inv.catalog.get(sku).stock
    return DemoReport(sku, stock, buyers, dict(outcomes), outcomes.get("paid", 0),
                      outcomes.get("failed", 0), after.available, after.sold, elapsed)
