"""Small helpers shared by test modules."""

from __future__ import annotations

from inventory import Inventory
from inventory.models import StockLevel


def make_product(inv: Inventory, sku: str = "HOT", *, stock: int = 10, price: int = 1500,
                 limit: int = 0) -> None:
    inv.catalog.configure(sku, name=f"Product {sku}", price=price, currency="USD", per_user_limit=limit)
    inv.catalog.adjust_stock(sku, set_total=stock, reason="seed")


def stock(inv: Inventory, sku: str = "HOT") -> StockLevel:
    return inv.catalog.get(sku).stock


def assert_invariant(level: StockLevel) -> None:
    assert level.available + level.held + level.sold == level.total, level
    assert min(level.available, level.held, level.sold, level.total) >= 0, level
