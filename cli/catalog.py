"""`flashstock catalog import|export`: reseed the catalogue from CSV / JSON, or dump it for editing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cli.common import (
    console,
    domain_errors,
    emit,
    fail,
    json_option,
    load_settings,
    open_inventory,
    persist_now,
    progress_bar,
)
from inventory.importer import (
    FORMATS,
    ImportRejected,
    apply_plan,
    detect_format,
    export_rows,
    plan_import,
    read_file,
    write_rows,
)

_FORMAT = click.option("--format", "fmt", type=click.Choice(sorted(set(FORMATS.values()))),
                       help="File format (default: from the extension .csv, .json, .jsonl).")


@click.group()
def catalog() -> None:
    """Import / reseed the catalogue from a file, or export it."""


@catalog.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@_FORMAT
@click.option("--dry-run", is_flag=True, help="Validate and show the diff against live; change nothing.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000),
              help="Rows per pipelined Redis round trip.")
@click.option("--show", default=50, show_default=True, type=click.IntRange(0, None),
              help="Diff lines to print in the table (JSON always has all).")
@click.option("--no-persist", is_flag=True, help="Leave the outbox to the sync worker instead of draining it now.")
@json_option
@domain_errors
def import_(path: Path, fmt: str | None, dry_run: bool, batch_size: int, show: int, no_persist: bool,
            as_json: bool) -> None:
    """Validate a whole catalogue file, then create/update its SKUs (stock is set as a total).

    \b
    Columns (CSV header or JSON keys): sku (required), name, price (minor units), currency,
    stock (total units), per_user_limit (0 = none), sale_starts_at, sale_ends_at (ISO 8601 with
    timezone, epoch ms, or 'open'), version (expected live version: compare-and-set).
    An empty cell keeps the live value. New SKUs need name, price and stock.
    Nothing is applied if any row is bad; every bad row is reported with its line number.
    """
    settings = load_settings()
    inv = open_inventory(settings)
    try:
        rows = read_file(path, inv.ctx.now_ms(), fmt=fmt)
        with progress_bar("comparing with live", len(rows)) as bar:
            task = bar.add_task("comparing with live", total=len(rows))
            plan = plan_import(inv, rows, progress=lambda n: bar.advance(task, n))
    except ImportRejected as rejected:
        _report_rejected(rejected, as_json)
        return
    summary = plan.summary()
    diff = list(plan.diff_rows())
    if dry_run:
        if as_json:
            emit({"dry_run": True, "summary": summary, "diff": diff}, as_json=True)
            return
        _print_diff(diff, show)
        emit(summary, as_json=False, title="dry run: nothing applied")
        return
    with progress_bar("applying", len(plan.changes)) as bar:
        task = bar.add_task("applying", total=len(plan.changes))
        result = apply_plan(inv, plan, batch_size=batch_size, progress=lambda n: bar.advance(task, n))
    persisted = None if no_persist else persist_now(inv, settings)
    report: dict[str, Any] = {
        "summary": summary, "created": result.created, "updated": result.updated, "unchanged": result.unchanged,
        "failed": len(result.failed), "seconds": result.seconds, "persisted": persisted,
    }
    if as_json:
        emit({**report, "failures": result.failed}, as_json=True)
    else:
        emit({k: v for k, v in report.items() if k != "summary"}, as_json=False, title=f"imported {path.name}")
        if result.failed:
            emit(result.failed, as_json=False, columns=["line", "sku", "code", "message"],
                 title="rows not applied (changed while importing)")
    if result.failed:
        click.echo(f"error: import_incomplete: {len(result.failed)} row(s) changed concurrently and were not "
                   "applied; re-run the import to apply them.", err=True)
        sys.exit(2)


def _print_diff(diff: list[dict[str, Any]], show: int) -> None:
    if diff and show:
        emit(diff[:show], as_json=False, columns=["line", "sku", "change", "field", "live", "new"],
             title="diff against live")
        if len(diff) > show:
            click.echo(f"... and {len(diff) - show} more changed fields (--show N or --json for all)")


def _report_rejected(rejected: ImportRejected, as_json: bool) -> None:
    if not as_json:
        table_rows = [{"line": p.line or "", "sku": p.sku, "field": p.field, "code": p.code, "message": p.message}
                      for p in rejected.problems]
        click.echo(_problems_table(table_rows), err=True, nl=False)
        if rejected.count > len(rejected.problems):
            click.echo(f"... and {rejected.count - len(rejected.problems)} more", err=True)
    fail(rejected.code, rejected.message, details={"count": rejected.count} if not as_json else
         {"count": rejected.count, "problems": rejected.problems}, as_json=as_json)


def _problems_table(rows: list[dict[str, Any]]) -> str:
    from rich.table import Table

    table = Table(title="rejected rows")
    for column in ("line", "sku", "field", "code", "message"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("line", "sku", "field", "code", "message")))
    err = console(stderr=True)
    with err.capture() as capture:
        err.print(table)
    return capture.get()


@catalog.command("export")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default="-")
@_FORMAT
@domain_errors
def export(path: Path, fmt: str | None) -> None:
    """Write every live product as an importable file (with versions for compare-and-set); '-' = stdout."""
    inv = open_inventory()
    kind = fmt or ("csv" if str(path) == "-" else detect_format(path))
    if str(path) == "-":
        write_rows(export_rows(inv), sys.stdout, kind)
        return
    with path.open("w", encoding="utf-8", newline="") as out:
        count = write_rows(export_rows(inv), out, kind)
    click.echo(f"exported {count} products to {path}", err=True)


COMMANDS = [catalog]
