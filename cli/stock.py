"""`flashstock stock set|add|remove|split`: change a SKU's total units (open holds and sold units are never
touched) or split them into buckets."""

from __future__ import annotations

from typing import Any, Callable

import click

from cli.common import domain_errors, emit, json_option, load_settings, open_inventory, persist_now
from inventory.engine import Inventory
from inventory.errors import InvalidArgument

# Lets "-5" reach the command as a value (and be rejected with a stable code) instead of being
# taken for an unknown option.
_VALUES = {"ignore_unknown_options": True}
_EXPECT = click.option("--expect-version", type=int, default=None,
                       help="Apply only if the SKU is still at this version (compare-and-set).")
_REASON = click.option("--reason", default="admin", show_default=True, help="Reason recorded in the stock ledger.")
_NO_PERSIST = click.option("--no-persist", is_flag=True, help="Leave the outbox to the sync worker.")


@click.group()
def stock() -> None:
    """Set, add or remove units of a SKU (total can never drop below held + sold)."""


def _adjust(sku: str, *, set_total: int | None = None, add: int | None = None, expect_version: int | None,
            reason: str, no_persist: bool, as_json: bool) -> None:
    if not reason or len(reason) > 32 or not reason.replace("_", "").replace("-", "").isalnum():
        raise InvalidArgument("reason must be 1-32 letters, digits, '_' or '-'.", field="reason")
    _apply(lambda inv: inv.catalog.adjust_stock(sku, set_total=set_total, add=add,
                                                expected_version=expect_version, reason=reason),
           no_persist=no_persist, as_json=as_json)


def _apply(change: Callable[[Inventory], Any], *, no_persist: bool, as_json: bool) -> None:
    """Run one change on the configured inventory, persist its outbox unless asked not to, print its result."""
    settings = load_settings()
    inv = open_inventory(settings)
    result = change(inv)
    if not no_persist:
        persist_now(inv, settings)
    emit(result, as_json=as_json)


def _units(value: int, name: str) -> int:
    if value < 0:
        raise InvalidArgument(f"{name} must not be negative.", field=name, value=value)
    return value


@stock.command("set", context_settings=_VALUES)
@click.argument("sku")
@click.argument("total", type=int)
@_EXPECT
@_REASON
@_NO_PERSIST
@json_option
@domain_errors
def set_(sku: str, total: int, expect_version: int | None, reason: str, no_persist: bool, as_json: bool) -> None:
    """Set the total units of SKU to TOTAL (available absorbs the difference)."""
    _adjust(sku, set_total=_units(total, "total"), expect_version=expect_version, reason=reason,
            no_persist=no_persist, as_json=as_json)


@stock.command("add", context_settings=_VALUES)
@click.argument("sku")
@click.argument("units", type=int)
@_EXPECT
@_REASON
@_NO_PERSIST
@json_option
@domain_errors
def add(sku: str, units: int, expect_version: int | None, reason: str, no_persist: bool, as_json: bool) -> None:
    """Add UNITS to the total of SKU."""
    _adjust(sku, add=_units(units, "units"), expect_version=expect_version, reason=reason,
            no_persist=no_persist, as_json=as_json)


@stock.command("remove", context_settings=_VALUES)
@click.argument("sku")
@click.argument("units", type=int)
@_EXPECT
@_REASON
@_NO_PERSIST
@json_option
@domain_errors
def remove(sku: str, units: int, expect_version: int | None, reason: str, no_persist: bool,
           as_json: bool) -> None:
    """Remove UNITS from the total of SKU (only available units can go)."""
    _adjust(sku, add=-_units(units, "units"), expect_version=expect_version, reason=reason,
            no_persist=no_persist, as_json=as_json)


@stock.command("split", context_settings=_VALUES)
@click.argument("sku")
@click.argument("buckets", type=int)
@_NO_PERSIST
@json_option
@domain_errors
def split(sku: str, buckets: int, no_persist: bool, as_json: bool) -> None:
    """Split SKU's stock into BUCKETS buckets over the Redis partitions, live (1 = one bucket)."""
    def change(inv: Inventory) -> Any:
        inv.buckets.split(sku, buckets)
        return inv.catalog.get(sku)

    _apply(change, no_persist=no_persist, as_json=as_json)


COMMANDS = [stock]
