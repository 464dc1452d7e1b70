"""`flashstock reconcile run|history|show`: compare Redis with Postgres, report drift, repair on request."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import select

from cli.common import domain_errors, emit, json_option, load_settings, open_inventory, open_sessions
from inventory.errors import InventoryError
from inventory.moments import format_moment
from inventory.reconcile import ReconcileReport, SkuDrift, run_reconciliation
from inventory.tables import ReconcileDriftRow, ReconcileRunRow

_DRIFT_COLUMNS = ["sku", "kind", "redis", "expected", "repaired", "units_repaired", "detail"]
_RUN_COLUMNS = ["id", "started", "full", "repair", "skus_checked", "skus_drifted", "skus_repaired",
                "orders_recovered"]


class RunNotFound(InventoryError):
    code = "reconcile_run_not_found"


@click.group()
def reconcile() -> None:
    """Reconciliation of Redis counters against the Postgres ledger."""


@reconcile.command()
@click.option("--repair", is_flag=True, help="Fix the drift found (compare-and-set; sales are never undone).")
@click.option("--full", is_flag=True, help="Check every SKU, not only those changed since the last repair.")
@json_option
@domain_errors
def run(repair: bool, full: bool, as_json: bool) -> None:
    """Run a reconciliation now and show its drift report."""
    settings = load_settings()
    report = run_reconciliation(open_inventory(settings), open_sessions(settings.database_url), repair=repair,
                                full=full)
    if as_json:
        emit({**_summary(report), "drifts": [_drift(d) for d in report.drifts]}, as_json=True)
        return
    emit(_summary(report), as_json=False, title=f"reconcile run {report.run_id}")
    if report.drifts:
        emit([_drift(d) for d in report.drifts], as_json=False, columns=_DRIFT_COLUMNS, title="drift")
        if not repair:
            click.echo("run again with --repair to fix it")


@reconcile.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@json_option
@domain_errors
def history(limit: int, as_json: bool) -> None:
    """Past runs, newest first."""
    settings = load_settings()
    with open_sessions(settings.database_url)() as session:
        runs = session.scalars(select(ReconcileRunRow).order_by(ReconcileRunRow.id.desc()).limit(limit)).all()
        rows = [_run_row(r) for r in runs]
    emit(rows, as_json=as_json, columns=_RUN_COLUMNS)


@reconcile.command()
@click.argument("run_id", type=int)
@json_option
@domain_errors
def show(run_id: int, as_json: bool) -> None:
    """One past run with the drift it found."""
    settings = load_settings()
    with open_sessions(settings.database_url)() as session:
        found = session.get(ReconcileRunRow, run_id)
        if found is None:
            raise RunNotFound("No such reconciliation run.", run_id=run_id)
        summary = _run_row(found)
        drifts = [_drift_row(d) for d in session.scalars(
            select(ReconcileDriftRow).where(ReconcileDriftRow.run_id == run_id).order_by(ReconcileDriftRow.sku))]
    if as_json:
        emit({**summary, "drifts": drifts}, as_json=True)
        return
    emit(summary, as_json=False, title=f"reconcile run {run_id}")
    if drifts:
        emit(drifts, as_json=False, columns=_DRIFT_COLUMNS, title="drift")


def _counts(counts: Any) -> str:
    return "missing" if counts is None else \
        f"total {counts.total} / avail {counts.available} / held {counts.held} / sold {counts.sold}"


def _summary(report: ReconcileReport) -> dict[str, Any]:
    return {"run_id": report.run_id, "full": report.full, "repair": report.repair,
            "skus_checked": report.skus_checked, "skus_drifted": report.skus_drifted,
            "skus_repaired": report.skus_repaired, "units_repaired": report.units_repaired,
            "orders_recovered": report.orders_recovered, "clean": report.clean}


def _drift(drift: SkuDrift) -> dict[str, Any]:
    return {"sku": drift.sku, "kind": drift.kind, "redis": _counts(drift.redis), "expected": _counts(drift.expected),
            "repaired": drift.repaired, "units_repaired": drift.units_repaired, "detail": drift.detail}


def _run_row(run: ReconcileRunRow) -> dict[str, Any]:
    return {"id": run.id, "started": format_moment(run.started_ms), "full": run.full, "repair": run.repair,
            "skus_checked": run.skus_checked, "skus_drifted": run.skus_drifted,
            "skus_repaired": run.skus_repaired, "orders_recovered": run.orders_recovered,
            "seconds": round((run.finished_ms - run.started_ms) / 1000, 3)}


def _drift_row(row: ReconcileDriftRow) -> dict[str, Any]:
    redis = None if row.redis_total is None else \
        f"total {row.redis_total} / avail {row.redis_available} / held {row.redis_held} / sold {row.redis_sold}"
    expected = f"total {row.expected_total} / avail {row.expected_available} / held {row.expected_held} / " \
               f"sold {row.expected_sold}"
    return {"sku": row.sku, "kind": row.kind, "redis": redis or "missing", "expected": expected,
            "repaired": row.repaired, "units_repaired": row.units_repaired, "detail": row.detail}


COMMANDS = [reconcile]
