"""`flashstock status`: live counters, sale state, persisted figures and reservation rate per SKU."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.live import Live
from rich.table import Table

from cli.common import (
    console,
    domain_errors,
    emit,
    json_option,
    load_settings,
    open_inventory,
    open_sessions,
    to_jsonable,
)
from inventory.config import Settings
from inventory.engine import Inventory
from inventory.sale_status import SkuStatus, page_of_skus, persisted_counts, read_status

_COLUMNS = ["sku", "state", "total", "available", "held", "sold", "persisted_total", "persisted_sold",
            "open_holds", "reservations_per_minute", "version"]
_HEADERS = ["sku", "state", "total", "avail", "held", "sold", "pg total", "pg sold", "holds", "res/min", "ver"]


@click.command()
@click.argument("skus", nargs=-1)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000),
              help="SKUs shown when none are named (catalogue order).")
@click.option("--after", default="", help="Start the listing after this SKU.")
@click.option("--watch", is_flag=True, help="Refresh live until Ctrl-C.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.1, 3600))
@click.option("--iterations", default=0, type=click.IntRange(0, None), hidden=True,
              help="Stop watching after N refreshes (0 = until Ctrl-C).")
@click.option("--no-db", is_flag=True, help="Skip the persisted (Postgres) figures.")
@json_option
@domain_errors
def status(skus: tuple[str, ...], limit: int, after: str, watch: bool, interval: float, iterations: int,
           no_db: bool, as_json: bool) -> None:
    """Per SKU: total / available / held / sold / persisted, sale state, reservations per minute."""
    settings = load_settings()
    inv = open_inventory(settings)
    sessions = None if no_db else open_sessions(settings.database_url)

    def snapshot() -> list[SkuStatus]:
        return _snapshot(inv, settings, sessions, list(skus) or page_of_skus(inv, after=after, limit=limit))

    if not watch:
        _print(snapshot(), single=len(skus) == 1, as_json=as_json)
        return
    count = 0
    try:
        if as_json:
            while True:
                click.echo(json.dumps(to_jsonable(snapshot()), sort_keys=True))
                count += 1
                if iterations and count >= iterations:
                    return
                time.sleep(interval)
        with Live(_table(snapshot()), console=console(), auto_refresh=False) as live:
            while not iterations or count < iterations - 1:
                time.sleep(interval)
                live.update(_table(snapshot()), refresh=True)
                count += 1
    except KeyboardInterrupt:
        pass


def _snapshot(inv: Inventory, settings: Settings, sessions: Any, skus: list[str]) -> list[SkuStatus]:
    persisted = None
    if sessions is not None and skus:
        try:
            layouts = inv.buckets.layouts(skus)
            persisted = persisted_counts(sessions, skus, {s: l.buckets for s, l in layouts.items() if l.split})
        except Exception:  # noqa: BLE001 - the live view must not die with the database; shown as blank
            persisted = None
    return read_status(inv, skus, persisted=persisted)


def _print(rows: list[SkuStatus], *, single: bool, as_json: bool) -> None:
    if single:
        emit(rows[0], as_json=as_json)
    else:
        emit(rows, as_json=as_json, columns=_COLUMNS)


def _table(rows: list[SkuStatus]) -> Table:
    table = Table(title=f"flashstock status  {time.strftime('%H:%M:%S')}")
    for header in _HEADERS:
        table.add_column(header, justify="left" if header in ("sku", "state") else "right")
    for row in rows:
        values = to_jsonable(row)
        table.add_row(*("" if values[c] is None else str(values[c]) for c in _COLUMNS))
    return table


COMMANDS = [status]
