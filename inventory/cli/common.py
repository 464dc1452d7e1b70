"""Shared CLI plumbing: building the core from settings, printing tables or JSON, clean failures."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime
from enum import Enum
from functools import wraps
from typing import Any, Callable, Sequence

import click
from rich.console import Console
from rich.table import Table

from inventory.config import Settings
from inventory.engine import Inventory
from inventory.errors import InventoryError

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def load_settings() -> Settings:
    """Settings from the environment; invalid settings exit with a message, not a traceback."""
    try:
        return Settings.from_env()
    except Exception as error:  # environs/ValueError: report and stop
        raise click.ClickException(f"invalid configuration: {error}") from error


def open_inventory(settings: Settings | None = None) -> Inventory:
    return Inventory.from_settings(settings or load_settings())


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums and datetimes as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def emit(data: Any, *, as_json: bool, columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """Print rows as a table (default) or the data as JSON."""
    plain = to_jsonable(data)
    if as_json:
        click.echo(json.dumps(plain, indent=2, sort_keys=True))
        return
    rows = plain if isinstance(plain, list) else [plain]
    if not rows:
        click.echo("(none)")
        return
    cols = list(columns or rows[0].keys())
    table = Table(title=title)
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in cols))
    Console().print(table)


def domain_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a domain error into a non-zero exit with its stable code and message."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InventoryError as error:
            details = f" {json.dumps(to_jsonable(error.details), sort_keys=True)}" if error.details else ""
            click.echo(f"error: {error.code}: {error.message}{details}", err=True)
            sys.exit(2)

    return wrapper
