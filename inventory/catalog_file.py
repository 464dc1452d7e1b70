"""Catalogue files (CSV, JSON array, JSON Lines): parse and validate every row, or write rows for export.

Every bad row is reported with its line number; a file with any bad row yields no rows at all.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from inventory.buckets import MAX_BUCKETS
from inventory.errors import InventoryError
from inventory.moments import parse_moment
from inventory.validation import is_sku

COLUMNS = ("sku", "name", "price", "currency", "stock", "per_user_limit", "sale_starts_at", "sale_ends_at",
           "version", "buckets")
ALIASES = {"limit": "per_user_limit", "starts_at": "sale_starts_at", "start": "sale_starts_at",
           "ends_at": "sale_ends_at", "end": "sale_ends_at", "total": "stock", "expected_version": "version"}
FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MAX_ROWS = 1_000_000
MAX_PROBLEMS = 1000  # keep reports readable; the count says how many more there were
MAX_UNITS = 10**12


@dataclass(frozen=True)
class CatalogRow:
    """One validated row; None means 'not given' (keep the live value; defaults for new SKUs)."""

    line: int
    sku: str
    name: str | None = None
    price: int | None = None
    currency: str | None = None
    stock: int | None = None
    per_user_limit: int | None = None
    starts_at: int | None = None  # ms since epoch, 0 = open
    ends_at: int | None = None
    version: int | None = None  # expected live version (compare-and-set)
    buckets: int | None = None  # stock buckets (inventory/buckets.py)


@dataclass(frozen=True)
class Problem:
    """Why one row (or the file) cannot be imported."""

    line: int
    field: str
    code: str
    message: str
    sku: str = ""


class ImportRejected(InventoryError):
    """The file has bad rows; nothing was applied."""

    code = "import_rejected"

    def __init__(self, problems: list[Problem], total: int | None = None) -> None:
        count = total if total is not None else len(problems)
        super().__init__(f"{count} problem(s) in the file; nothing was applied.", problems=problems, count=count)
        self.problems = problems
        self.count = count

def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """'csv' | 'json' | 'jsonl', from an explicit choice or the file extension."""
    if fmt:
        if fmt not in FORMATS.values():
            raise ImportRejected([Problem(0, "format", "unknown_format", f"Unknown format {fmt!r}.")])
        return fmt
    found = FORMATS.get(Path(path).suffix.lower())
    if not found:
        raise ImportRejected([Problem(0, "format", "unknown_format",
                                      "Cannot tell the format from the file name; use .csv, .json or .jsonl "
                                      "(or give the format).")])
    return found


def read_file(path: str | Path, now_ms: int, *, fmt: str | None = None) -> list[CatalogRow]:
    """Every row of a catalogue file, validated; raises ImportRejected listing every bad row."""
    kind = detect_format(path, fmt)
    try:
        content = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportRejected([Problem(0, "file", "malformed_file", f"The file is not UTF-8: {error}.")]) from None
    except OSError as error:
        raise ImportRejected([Problem(0, "file", "unreadable_file", f"Cannot read the file: {error.strerror}.")]) \
            from None
    return parse_text(content, kind, now_ms)


def parse_text(content: str, kind: str, now_ms: int) -> list[CatalogRow]:
    """Rows from file content of the given format; raises ImportRejected listing every bad row."""
    problems: list[Problem] = []
    records = {"csv": _csv_records, "json": _json_records, "jsonl": _jsonl_records}[kind](content, problems)
    rows: list[CatalogRow] = []
    first_line: dict[str, int] = {}
    for line, record in records:
        if len(rows) >= MAX_ROWS:
            problems.append(Problem(line, "file", "too_many_rows", f"At most {MAX_ROWS} rows per file."))
            break
        row = _row_of(line, record, now_ms, problems)
        if row is None:
            continue
        if row.sku in first_line:
            problems.append(Problem(line, "sku", "duplicate_sku",
                                    f"SKU also on line {first_line[row.sku]}.", row.sku))
            continue
        first_line[row.sku] = line
        rows.append(row)
    if not rows and not problems:
        problems.append(Problem(0, "file", "empty_file", "The file has no rows."))
    if problems:
        raise ImportRejected(problems[:MAX_PROBLEMS], len(problems))
    return rows


def _canonical(name: Any) -> str:
    key = str(name).strip().lower()
    return ALIASES.get(key, key)


def _csv_records(content: str, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as error:
        problems.append(Problem(reader.line_num, "file", "malformed_csv", f"Cannot read the header: {error}."))
        return
    if header is None:
        return
    columns = [_canonical(h) for h in header]
    bad = [h for h, c in zip(header, columns) if c not in COLUMNS]
    if bad or "sku" not in columns or len(set(columns)) != len(columns):
        problems.append(Problem(1, "header", "bad_header",
                                f"Columns must be from {', '.join(COLUMNS)} (with 'sku'), each once; "
                                f"got {', '.join(header)}."))
        return
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            problems.append(Problem(reader.line_num, "row", "malformed_csv", f"Malformed CSV: {error}."))
            return  # the reader cannot resynchronise after a quoting error
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) != len(columns):
            problems.append(Problem(reader.line_num, "row", "wrong_field_count",
                                    f"Expected {len(columns)} fields, got {len(cells)}."))
            continue
        yield reader.line_num, dict(zip(columns, cells))


def _json_records(content: str, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any]]]:
    decoder, pos, line, counted = json.JSONDecoder(), 0, 1, 0

    def skip(p: int) -> int:
        while p < len(content) and content[p] in " \t\r\n":
            p += 1
        return p

    def line_at(p: int) -> int:
        nonlocal line, counted
        line += content.count("\n", counted, p)
        counted = p
        return line

    pos = skip(pos)
    if pos >= len(content) or content[pos] != "[":
        problems.append(Problem(line_at(pos), "file", "malformed_json", "A JSON file must be an array of objects."))
        return
    pos = skip(pos + 1)
    if pos < len(content) and content[pos] == "]":
        return
    while True:
        try:
            value, end = decoder.raw_decode(content, pos)
        except json.JSONDecodeError as error:
            problems.append(Problem(error.lineno, "file", "malformed_json", f"Malformed JSON: {error.msg}."))
            return
        start_line = line_at(pos)
        yield from _json_object(start_line, value, problems)
        pos = skip(end)
        if pos < len(content) and content[pos] == ",":
            pos = skip(pos + 1)
        elif pos < len(content) and content[pos] == "]":
            if skip(pos + 1) != len(content):
                problems.append(Problem(line_at(pos), "file", "malformed_json", "Text after the closing ']'."))
            return
        else:
            problems.append(Problem(line_at(pos), "file", "malformed_json", "Expected ',' or ']' between rows."))
            return


def _jsonl_records(content: str, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            problems.append(Problem(number, "row", "malformed_json", f"Malformed JSON: {error.msg}."))
            continue
        yield from _json_object(number, value, problems)


def _json_object(line: int, value: Any, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any]]]:
    if not isinstance(value, dict):
        problems.append(Problem(line, "row", "malformed_row", "Each row must be a JSON object."))
        return
    record = {_canonical(k): v for k, v in value.items()}
    unknown = sorted(set(record) - set(COLUMNS))
    if unknown or len(record) != len(value):
        problems.append(Problem(line, unknown[0] if unknown else "row", "unknown_field",
                                f"Unknown or repeated field(s): {', '.join(unknown) or 'aliases'}."))
        return
    yield line, record


def _row_of(line: int, record: Mapping[str, Any], now_ms: int, problems: list[Problem]) -> CatalogRow | None:
    """A CatalogRow, or None after appending one Problem per bad field."""
    before = len(problems)
    values = {k: (v.strip() if isinstance(v, str) else v) for k, v in record.items()}
    values = {k: (None if v == "" else v) for k, v in values.items()}
    sku = values.get("sku")
    if sku is None:
        problems.append(Problem(line, "sku", "missing", "sku is required."))
        sku = ""
    elif not is_sku(sku):
        problems.append(Problem(line, "sku", "invalid_sku",
                                "SKU must be 1-64 characters of letters, digits, '.', '_' or '-'.", str(sku)))
        sku = ""

    def bad(name: str, code: str, message: str) -> None:
        problems.append(Problem(line, name, code, message, sku))

    name = values.get("name")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 200):
        bad("name", "invalid_name", "name must be 1-200 characters.")
    currency = values.get("currency")
    if currency is not None and not (isinstance(currency, str) and len(currency) == 3
                                     and currency.isascii() and currency.isalpha() and currency.isupper()):
        bad("currency", "invalid_currency", "currency must be a 3-letter upper-case ISO 4217 code, e.g. USD.")
    numbers: dict[str, int | None] = {}
    for column, upper in (("price", MAX_UNITS), ("stock", MAX_UNITS), ("per_user_limit", 1_000_000),
                          ("version", MAX_UNITS), ("buckets", MAX_BUCKETS)):
        numbers[column] = _integer(values.get(column), column, upper, bad)
    if numbers["buckets"] == 0:
        bad("buckets", "invalid_integer", f"buckets must be from 1 to {MAX_BUCKETS}.")
    moments: dict[str, int | None] = {}
    for column in ("sale_starts_at", "sale_ends_at"):
        raw = values.get(column)
        moments[column] = None
        if raw is None:
            continue
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            bad(column, "invalid_time", f"{column} must be an ISO 8601 time or epoch ms.")
            continue
        try:
            moments[column] = parse_moment(str(raw), now_ms, field=column)
        except InventoryError as error:
            bad(column, "invalid_time", error.message)
    starts, ends = moments["sale_starts_at"], moments["sale_ends_at"]
    if starts and ends and ends <= starts:
        bad("sale_ends_at", "invalid_window", "The sale must end after it starts.")
    if len(problems) > before:
        return None
    return CatalogRow(line=line, sku=sku, name=name, price=numbers["price"], currency=currency,
                      stock=numbers["stock"], per_user_limit=numbers["per_user_limit"], starts_at=starts,
                      ends_at=ends, version=numbers["version"], buckets=numbers["buckets"])


def _integer(raw: Any, column: str, upper: int, bad: Callable[[str, str, str], None]) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, str) and raw.lstrip("-").isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        hint = " (minor units, e.g. 1999 for 19.99)" if column == "price" else ""
        bad(column, "invalid_integer", f"{column} must be a whole number{hint}.")
        return None
    if raw < 0:
        bad(column, "negative", f"{column} must not be negative.")
        return None
    if raw > upper:
        bad(column, "too_large", f"{column} must be at most {upper}.")
        return None
    return raw

def write_rows(rows: Iterable[dict[str, Any]], out: io.TextIOBase | Any, kind: str) -> int:
    """Write rows as CSV, a JSON array or JSON Lines; returns the count."""
    count = 0
    if kind == "csv":
        writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for count, row in enumerate(rows, start=1):
            writer.writerow(row)
    elif kind == "jsonl":
        for count, row in enumerate(rows, start=1):
            out.write(json.dumps(row, sort_keys=True) + "\n")
    else:
        out.write("[")
        for count, row in enumerate(rows, start=1):
            out.write(("\n  " if count == 1 else ",\n  ") + json.dumps(row, sort_keys=True))
        out.write("\n]\n")
    return count
