"""configure_product and adjust_stock: safe while live, compare-and-set, validated."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from inventory import Inventory
from inventory.errors import InvalidArgument, ProductNotFound, StockBelowCommitted, VersionConflict
from inventory.models import SaleState
from tests.helpers import assert_invariant, make_product, stock


def test_set_total_while_live_keeps_holds_and_sold_units(inv: Inventory) -> None:
    make_product(inv, stock=10)
    inv.reservations.checkout(inv.reservations.reserve("a", {"HOT": 3}).id)
    inv.reservations.reserve("b", {"HOT": 2})
    level = inv.catalog.adjust_stock("HOT", set_total=20)
    assert (level.total, level.available, level.held, level.sold) == (20, 15, 2, 3)
    assert_invariant(level)


def test_total_cannot_drop_below_held_plus_sold(inv: Inventory) -> None:
    make_product(inv, stock=10)
    inv.reservations.checkout(inv.reservations.reserve("a", {"HOT": 3}).id)
    inv.reservations.reserve("b", {"HOT": 2})
    with pytest.raises(StockBelowCommitted) as caught:
        inv.catalog.adjust_stock("HOT", set_total=4)
    assert caught.value.details == {"committed": 5, "requested": 4}
    with pytest.raises(StockBelowCommitted):
        inv.catalog.adjust_stock("HOT", add=-6)
    assert inv.catalog.adjust_stock("HOT", add=-5).available == 0
    assert stock(inv).total == 5


def test_expected_version_gives_compare_and_set(inv: Inventory) -> None:
    make_product(inv, stock=10)
    version = inv.catalog.get("HOT").version
    inv.catalog.adjust_stock("HOT", add=5, expected_version=version)
    with pytest.raises(VersionConflict) as caught:
        inv.catalog.adjust_stock("HOT", add=5, expected_version=version)
    assert caught.value.details == {"expected": version, "actual": version + 1}
    assert stock(inv).total == 15


def test_reservations_do_not_bump_the_admin_version(inv: Inventory) -> None:
    make_product(inv, stock=10)
    version = inv.catalog.get("HOT").version
    inv.reservations.reserve("a", {"HOT": 1})
    assert inv.catalog.get("HOT").version == version


@pytest.mark.parametrize(
    "kwargs",
    [{"set_total": -1}, {"add": 1.5}, {}, {"set_total": 1, "add": 1}, {"set_total": True}],
)
def test_invalid_adjustments_change_nothing(inv: Inventory, kwargs) -> None:  # noqa: ANN001
    make_product(inv, stock=10)
    with pytest.raises(InvalidArgument):
        inv.catalog.adjust_stock("HOT", **kwargs)
    assert stock(inv).total == 10


def test_adjusting_an_unknown_sku_is_not_found(inv: Inventory) -> None:
    with pytest.raises(ProductNotFound):
        inv.catalog.adjust_stock("NOPE", set_total=1)


def test_window_end_before_start_is_refused(inv: Inventory) -> None:
    make_product(inv, stock=1)
    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(InvalidArgument):
        inv.catalog.configure("HOT", starts_at=start, ends_at=start - timedelta(hours=1))
    with pytest.raises(InvalidArgument):
        inv.catalog.configure("HOT", starts_at=datetime(2030, 1, 1))  # naive time
    assert inv.catalog.get("HOT").sale_starts_at is None


@pytest.mark.parametrize(
    "kwargs",
    [{"price": -1}, {"currency": "usd"}, {"currency": "EURO"}, {"name": ""}, {"per_user_limit": -2}],
)
def test_invalid_product_settings_change_nothing(inv: Inventory, kwargs) -> None:  # noqa: ANN001
    make_product(inv, stock=1, price=700)
    before = inv.catalog.get("HOT")
    with pytest.raises(InvalidArgument):
        inv.catalog.configure("HOT", **kwargs)
    assert inv.catalog.get("HOT") == before


def test_pause_and_resume_show_in_the_sale_state(inv: Inventory) -> None:
    make_product(inv, stock=1)
    assert inv.catalog.configure("HOT", paused=True).sale_state is SaleState.PAUSED
    assert inv.catalog.configure("HOT", paused=False).sale_state is SaleState.ACTIVE


def test_catalog_lists_products_in_pages(inv: Inventory) -> None:
    for sku in ("C", "A", "B"):
        make_product(inv, sku, stock=1)
    assert [p.sku for p in inv.catalog.list(limit=2)] == ["A", "B"]
    assert [p.sku for p in inv.catalog.list(after="B")] == ["C"]
