"""`flashstock sale schedule|pause|resume|limit`: control the sale of one SKU, several, or all."""

from __future__ import annotations

from typing import Any

import click

from cli.common import domain_errors, emit, json_option, load_settings, open_inventory, persist_now
from inventory.errors import InvalidArgument
from inventory.moments import parse_moment
from inventory.sale_admin import SaleChange, all_skus, set_global_pause, update_sale

_COLUMNS = ["sku", "applied", "state", "version", "note"]
_ALL = click.option("--all", "all_", is_flag=True, help="Every SKU in the catalogue.")
_EXPECT = click.option("--expect-version", type=int, default=None,
                       help="Apply only if the SKU is still at this version (compare-and-set; one SKU).")
_NO_PERSIST = click.option("--no-persist", is_flag=True, help="Leave the outbox to the sync worker.")


@click.group()
def sale() -> None:
    """Sale window, pause / resume and per-user limits."""


def _run(skus: tuple[str, ...], all_: bool, as_json: bool, no_persist: bool, **changes: Any) -> None:
    if bool(skus) == all_:
        raise InvalidArgument("Give SKUs or --all (not both).", field="sku")
    settings = load_settings()
    inv = open_inventory(settings)
    targets = all_skus(inv) if all_ else list(skus)
    if all_ and not targets:
        raise InvalidArgument("The catalogue is empty.", field="sku")
    results: list[SaleChange] = update_sale(inv, targets, **changes)
    if not no_persist and any(r.applied for r in results):
        persist_now(inv, settings)
    emit(results, as_json=as_json, columns=_COLUMNS)


@sale.command()
@click.argument("skus", nargs=-1)
@_ALL
@click.option("--start", "start", help="Start: ISO 8601 with timezone, epoch ms, 'now', '+10m', or 'open'.")
@click.option("--end", "end", help="End: same forms; must be after the start.")
@_EXPECT
@_NO_PERSIST
@json_option
@domain_errors
def schedule(skus: tuple[str, ...], all_: bool, start: str | None, end: str | None, expect_version: int | None,
             no_persist: bool, as_json: bool) -> None:
    """Set the sale window of SKUs (a bound left out keeps its live value)."""
    if start is None and end is None:
        raise InvalidArgument("Give --start and/or --end.", field="window")
    inv_now = open_inventory().ctx.now_ms()
    starts = parse_moment(start, inv_now, field="start") if start is not None else None
    ends = parse_moment(end, inv_now, field="end") if end is not None else None
    if starts and ends and ends <= starts:
        raise InvalidArgument("The sale must end after it starts.", field="window")
    _run(skus, all_, as_json, no_persist, starts_at_ms=starts, ends_at_ms=ends, expected_version=expect_version)


@sale.command()
@click.argument("skus", nargs=-1)
@_ALL
@_EXPECT
@_NO_PERSIST
@json_option
@domain_errors
def pause(skus: tuple[str, ...], all_: bool, expect_version: int | None, no_persist: bool, as_json: bool) -> None:
    """Stop new reservations at once (checkouts of existing holds continue).

    --all sets the global switch: every SKU, including ones created later, until `resume --all`.
    """
    if all_ and not skus:
        _switch(True, as_json)
        return
    _run(skus, all_, as_json, no_persist, paused=True, expected_version=expect_version)


@sale.command()
@click.argument("skus", nargs=-1)
@_ALL
@_EXPECT
@_NO_PERSIST
@json_option
@domain_errors
def resume(skus: tuple[str, ...], all_: bool, expect_version: int | None, no_persist: bool, as_json: bool) -> None:
    """Allow reservations again (within the sale window).

    --all clears the global switch; SKUs paused one by one stay paused until resumed by name.
    """
    if all_ and not skus:
        _switch(False, as_json)
        return
    _run(skus, all_, as_json, no_persist, paused=False, expected_version=expect_version)


def _switch(paused: bool, as_json: bool) -> None:
    set_global_pause(open_inventory(), paused)
    state = "paused_globally" if paused else "active"
    emit([SaleChange("*", True, state, 0, "global switch: every SKU, also ones created later")],
         as_json=as_json, columns=_COLUMNS)


@sale.command()
@click.argument("skus", nargs=-1)
@_ALL
@click.option("--per-user", "per_user", type=int, required=True, help="Units one user may hold + order; 0 = none.")
@_EXPECT
@_NO_PERSIST
@json_option
@domain_errors
def limit(skus: tuple[str, ...], all_: bool, per_user: int, expect_version: int | None, no_persist: bool,
          as_json: bool) -> None:
    """Set the per-user limit of SKUs."""
    _run(skus, all_, as_json, no_persist, per_user_limit=per_user, expected_version=expect_version)


COMMANDS = [sale]
