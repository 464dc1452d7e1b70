"""Shared CLI plumbing: building the core from settings, printing tables or JSON, clean failures."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime
from enum import Enum
from functools import lru_cache, wraps
from typing import Any, Callable, Sequence

import click
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

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


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys ({'stock': {'total': 1}} -> {'stock.total': 1}), for tables."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def emit(data: Any, *, as_json: bool, columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """Print rows as a table, one record as a field/value table (default), or the data as JSON."""
    plain = to_jsonable(data)
    if as_json:
        click.echo(json.dumps(plain, indent=2, sort_keys=True))
        return
    if isinstance(plain, dict):
        emit_record(plain, fields=columns, title=title)
        return
    rows = plain if isinstance(plain, list) else [plain]
    if not rows:
        click.echo("(none)")
        return
    flat = [{**row, **flatten(row)} if isinstance(row, dict) else {"value": row} for row in rows]
    cols = list(columns) if columns else list(flatten(rows[0]) if isinstance(rows[0], dict) else ["value"])
    table = Table(title=title)
    for col in cols:
        table.add_column(col)
    for row in flat:
        table.add_row(*(_cell(row.get(c)) for c in cols))
    console().print(table)


def emit_record(record: dict[str, Any], *, fields: Sequence[str] | None = None, title: str | None = None) -> None:
    """One record as a two-column field/value table."""
    flat = {**record, **flatten(record)}
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for name in fields or flatten(record).keys():
        table.add_row(name, _cell(flat.get(name)))
    console().print(table)


def console(*, stderr: bool = False) -> Console:
    """A rich console on click's current streams (so CliRunner captures it), wide enough for tables."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 160)


def fail(code: str, message: str, *, details: dict[str, Any] | None = None, as_json: bool = False,
         exit_code: int = 2) -> None:
    """Stop with a stable error code and a human message on stderr (and a JSON envelope with --json)."""
    if as_json:
        click.echo(json.dumps({"error": {"code": code, "message": message, "details": to_jsonable(details or {})}},
                              indent=2, sort_keys=True))
    extra = f" {json.dumps(to_jsonable(details), sort_keys=True)}" if details else ""
    click.echo(f"error: {code}: {message}{extra}", err=True)
    sys.exit(exit_code)


def domain_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a domain error into exit 2 and an unreachable server into exit 3, each with a stable code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return func(*args, **kwargs)
        except InventoryError as error:
            fail(error.code, error.message, details=error.details, as_json=as_json)
        except RedisError as error:
            fail("unavailable", f"Redis is not reachable or failed: {error}", as_json=as_json, exit_code=3)
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            fail("database_error", f"The database failed: {reason}", as_json=as_json, exit_code=3)

    return wrapper


@lru_cache(maxsize=4)
def open_sessions(database_url: str) -> Any:
    """A session factory for the database URL (PostgreSQL, or SQLite embedded), one per URL and process."""
    from inventory.db import make_engine, make_session_factory

    return make_session_factory(make_engine(database_url, pool_size=2))


def progress_bar(description: str, total: int, *, enabled: bool = True) -> Any:
    """A rich progress bar on stderr (stdout stays clean for --json); silent when not a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    err = console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err, transient=True, disable=not (enabled and err.is_terminal))


def persist_now(inv: Inventory, settings: Settings) -> dict[str, Any]:
    """Drain the outbox into the database now, so Postgres matches Redis when the command returns."""
    from inventory import persistence

    try:
        drained = persistence.persist_now(inv, open_sessions(settings.database_url))
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        fail("persist_failed", "Redis has the change but writing it to the database failed "
             f"({reason}); the outbox keeps it for the sync worker (is `flashstock db upgrade` done?).",
             exit_code=3)
    return to_jsonable(drained)
