"""Catalogue import / reseed: diff validated rows against live Redis, then apply them pipelined.

Stock is always written as a new *total* through the adjust_stock script, which never touches held or
sold units, so a reseed during a live sale is safe. Parsing lives in inventory.catalog_file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from inventory.catalog import Catalog
from inventory.catalog_file import (
    COLUMNS,
    FORMATS,
    MAX_PROBLEMS,
    CatalogRow,
    ImportRejected,
    Problem,
    detect_format,
    parse_text,
    read_file,
    write_rows,
)
from inventory.context import text
from inventory.engine import Inventory
from inventory.errors import InventoryError, raise_for_reply
from inventory.moments import format_moment

Progress = Callable[[int], None]

READ_BATCH = 1000
_LIVE_FIELDS = ("total", "held", "sold", "ver", "name", "price", "cur", "limit", "start", "end", "bk", "bkn",
                "bkp")
# Diffable product fields: (row attribute, stock hash field).
_COMPARED = (("name", "name"), ("price", "price"), ("currency", "cur"), ("per_user_limit", "limit"),
             ("starts_at", "start"), ("ends_at", "end"))


@dataclass(frozen=True)
class Change:
    """What applying one row changes: catalogue fields and/or the stock total."""

    line: int
    sku: str
    kind: str  # "new" | "changed"
    fields: dict[str, tuple[Any, Any]]  # display name -> (live, new)
    live_version: int
    pairs: list[Any]  # configure_product field/value pairs ([] = catalogue unchanged)
    set_total: int | None  # new stock total (None = unchanged)
    buckets: int | None = None  # new number of stock buckets (None = unchanged)
    split: bool = False  # the live SKU is split into buckets: written through inventory/buckets.py


@dataclass
class ImportPlan:
    """The diff between a file and live Redis, ready to apply."""

    rows: int
    changes: list[Change]
    unchanged: int
    live_not_in_file: int

    def summary(self) -> dict[str, int]:
        """Counts by kind of change."""
        counts = {"rows": self.rows, "new": 0, "changed": 0, "unchanged": self.unchanged,
                  "stock_changes": 0, "price_changes": 0, "other_changes": 0,
                  "live_not_in_file": self.live_not_in_file}
        for change in self.changes:
            counts[change.kind] += 1
            if change.kind == "changed":
                counts["stock_changes"] += "stock" in change.fields
                counts["price_changes"] += "price" in change.fields
                counts["other_changes"] += bool(set(change.fields) - {"stock", "price"})
        return counts

    def diff_rows(self) -> Iterator[dict[str, Any]]:
        """One flat record per changed field, for tables and JSON."""
        for change in self.changes:
            for name, (live, new) in change.fields.items():
                yield {"line": change.line, "sku": change.sku, "change": change.kind, "field": name,
                       "live": _show(name, live), "new": _show(name, new)}


@dataclass
class ImportResult:
    """What an import did."""

    rows: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[Problem] = field(default_factory=list)
    seconds: float = 0.0


def _show(name: str, value: Any) -> Any:
    if name in ("sale_starts_at", "sale_ends_at") and isinstance(value, int):
        return format_moment(value) or "open"
    return value


# -- parsing -----------------------------------------------------------------------------------
# -- diff against live -------------------------------------------------------------------------

def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def read_live(inv: Inventory, skus: list[str]) -> Iterator[dict[str, str]]:
    """The stock hash fields the diff needs, per SKU in order ({} = not live), pipelined."""
    for batch in _chunks(skus, READ_BATCH):
        pipe = inv.redis.pipeline(transaction=False)
        for sku in batch:
            pipe.hmget(inv.keys.sku(sku).stock, _LIVE_FIELDS)
        found = {sku: {f: text(v) for f, v in zip(_LIVE_FIELDS, values) if v is not None}
                 for sku, values in zip(batch, pipe.execute()) if values[0] is not None}
        found = inv.buckets.sum_into(found)  # a split SKU's counters are the sums over its buckets
        for sku in batch:
            yield found.get(sku, {})


def plan_import(inv: Inventory, rows: list[CatalogRow], *, progress: Progress | None = None) -> ImportPlan:
    """Diff rows against live Redis; raises ImportRejected for rows that cannot apply (nothing written)."""
    problems: list[Problem] = []
    changes: list[Change] = []
    unchanged = existing = 0
    for count, (row, live) in enumerate(zip(rows, read_live(inv, [r.sku for r in rows])), start=1):
        existing += bool(live)
        change = _change_of(row, live, problems)
        if change is None:
            unchanged += bool(live)
        else:
            changes.append(change)
        if progress and count % READ_BATCH == 0:
            progress(READ_BATCH)
    if progress:
        progress(len(rows) % READ_BATCH)
    if problems:
        raise ImportRejected(problems[:MAX_PROBLEMS], len(problems))
    pipe = inv.redis.pipeline(transaction=False)
    for part in inv.keys.parts:
        pipe.zcard(part.catalog)
    live_total = sum(int(n) for n in pipe.execute())
    return ImportPlan(rows=len(rows), changes=changes, unchanged=unchanged,
                      live_not_in_file=max(0, live_total - existing))


def _change_of(row: CatalogRow, live: dict[str, str], problems: list[Problem]) -> Change | None:
    def bad(name: str, code: str, message: str) -> None:
        problems.append(Problem(row.line, name, code, message, row.sku))

    version = int(live.get("ver") or 0)
    if row.version is not None and row.version != version:
        bad("version", "version_conflict", f"Expected version {row.version} but the live version is {version}.")
        return None
    if not live:
        missing = [c for c in ("name", "price", "stock") if getattr(row, c) is None]
        if missing:
            bad(missing[0], "missing", f"A new SKU needs {', '.join(missing)}.")
            return None
    starts = row.starts_at if row.starts_at is not None else int(live.get("start") or 0)
    ends = row.ends_at if row.ends_at is not None else int(live.get("end") or 0)
    if starts and ends and ends <= starts:
        bad("sale_ends_at", "invalid_window", "With the live window this sale would end before it starts.")
        return None
    committed = int(live.get("held") or 0) + int(live.get("sold") or 0)
    if row.stock is not None and row.stock < committed:
        bad("stock", "stock_below_committed",
            f"stock {row.stock} is below the {committed} units held or sold right now.")
        return None

    fields: dict[str, tuple[Any, Any]] = {}
    pairs: list[Any] = []
    for attribute, hash_field in _COMPARED:
        new = getattr(row, attribute)
        if new is None:
            continue
        old: Any = live.get(hash_field)
        if old is not None and hash_field not in ("name", "cur"):
            old = int(old)
        if old != new:
            display = {"starts_at": "sale_starts_at", "ends_at": "sale_ends_at"}.get(attribute, attribute)
            fields[display] = (old, new)
            pairs += [hash_field, new]
    set_total = None
    if row.stock is not None and (not live or row.stock != int(live["total"])):
        fields["stock"] = (int(live["total"]) if live else None, row.stock)
        set_total = row.stock
    buckets = None
    if row.buckets is not None and row.buckets != int(live.get("bk") or 1):
        fields["buckets"] = (int(live.get("bk") or 1) if live else None, row.buckets)
        buckets = row.buckets
    if not fields and live:
        return None
    return Change(row.line, row.sku, "changed" if live else "new", fields, version, pairs, set_total, buckets,
                  bool(live.get("bk")))


# -- apply -------------------------------------------------------------------------------------

def apply_plan(inv: Inventory, plan: ImportPlan, *, reason: str = "import", batch_size: int = 500,
               progress: Progress | None = None) -> ImportResult:
    """Write every change through the admin scripts, `batch_size` rows per pipelined round trip.

    Each row is compare-and-set against the version read when planning, so a concurrent admin change
    fails that row (reported) instead of being overwritten; stock is set as a total by adjust_stock,
    which refuses a total below held + sold at the moment it runs.
    """
    started = time.perf_counter()
    result = ImportResult(rows=plan.rows, unchanged=plan.unchanged)
    catalog: Catalog = inv.catalog
    for batch in _chunks(plan.changes, batch_size):
        pipe = inv.ctx.script_batch()  # pipelined on one node; one call at a time on a cluster
        calls: list[Change] = []
        for change in batch:
            version = change.live_version
            if change.split:  # writes to several buckets: one by one, after this batch's pipeline
                continue
            if change.pairs:
                pipe.call("configure_product", *catalog.configure_call(change.sku, change.pairs, version))
                calls.append(change)
                version += 1
            if change.set_total is not None:
                pipe.call("adjust_stock", *catalog.adjust_call(change.sku, "set", change.set_total, version, reason))
                calls.append(change)
        failed: dict[str, Problem] = {}
        for change, reply in zip(calls, pipe.execute()):
            error = _reply_error(reply)
            if error is not None and change.sku not in failed:
                failed[change.sku] = Problem(change.line, "row", error.code, error.message, change.sku)
        for change in batch:
            error = None if change.sku in failed else _apply_to_buckets(inv, change, reason)
            if error is not None and change.sku not in failed:
                failed[change.sku] = Problem(change.line, "row", error.code, error.message, change.sku)
            if change.sku in failed:
                result.failed.append(failed[change.sku])
            elif change.kind == "new":
                result.created += 1
            else:
                result.updated += 1
        if progress:
            progress(len(batch))
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _apply_to_buckets(inv: Inventory, change: Change, reason: str) -> InventoryError | None:
    """A split SKU's settings and total (through its buckets), and any change of its number of buckets."""
    try:
        if change.split and change.pairs:
            inv.ctx.run("configure_product", *inv.catalog.configure_call(change.sku, change.pairs, change.live_version))
            inv.buckets.configure_buckets(change.sku, change.pairs)
        if change.split and change.set_total is not None:
            inv.buckets.adjust(change.sku, "set", change.set_total, None, reason)
        if change.buckets is not None:
            inv.buckets.split(change.sku, change.buckets)
    except InventoryError as error:
        return error
    return None


def _reply_error(reply: Any) -> InventoryError | None:
    if isinstance(reply, Exception):
        return InventoryError(f"Redis error: {reply}")
    try:
        raise_for_reply(reply)
    except InventoryError as error:
        return error
    return None


# -- export ------------------------------------------------------------------------------------

def export_rows(inv: Inventory, *, page: int = 1000) -> Iterator[dict[str, Any]]:
    """Every live product as an import row (with its version, for compare-and-set on re-import)."""
    after = ""
    while True:
        products = inv.catalog.list(after=after, limit=page)
        for p in products:
            yield {"sku": p.sku, "name": p.name, "price": p.price, "currency": p.currency,
                   "stock": p.stock.total, "per_user_limit": p.per_user_limit,
                   "sale_starts_at": _iso(p.sale_starts_at), "sale_ends_at": _iso(p.sale_ends_at),
                   "version": p.version, "buckets": p.buckets}
        if len(products) < page:
            return
        after = products[-1].sku


def _iso(moment: Any) -> str:
    return format_moment(int(moment.timestamp() * 1000)) if moment else ""


__all__ = ["COLUMNS", "FORMATS", "CatalogRow", "Change", "ImportPlan", "ImportRejected", "ImportResult", "Problem",
           "apply_plan", "detect_format", "export_rows", "parse_text", "plan_import", "read_file", "read_live",
           "write_rows"]
