"""Catalogue file parsing: every bad row reported with its line number, nothing returned if any is bad."""

from __future__ import annotations

import io

import pytest

from inventory.catalog_file import CatalogRow, ImportRejected, parse_text, write_rows
from inventory.errors import InvalidArgument
from inventory.moments import format_moment, parse_moment

NOW = 1_800_000_000_000


def problems(content: str, kind: str = "csv") -> list[tuple[int, str, str]]:
    with pytest.raises(ImportRejected) as caught:
        parse_text(content, kind, NOW)
    return [(p.line, p.field, p.code) for p in caught.value.problems]


def test_csv_rows_parse_with_aliases_blank_cells_and_blank_lines() -> None:
    rows = parse_text("SKU, Name ,price,limit,start,end,total\nA,Alpha,100,2,now,+1h,5\n\nB,,,,,,\n", "csv", NOW)
    assert rows == [
        CatalogRow(line=2, sku="A", name="Alpha", price=100, per_user_limit=2, starts_at=NOW,
                   ends_at=NOW + 3_600_000, stock=5),
        CatalogRow(line=4, sku="B"),
    ]


def test_every_bad_csv_row_is_reported_with_its_line() -> None:
    content = "sku,price,stock\nA,1,1\nB,1.5,x\nC,1\nA,1,1\n"
    assert problems(content) == [(3, "price", "invalid_integer"), (3, "stock", "invalid_integer"),
                                 (4, "row", "wrong_field_count"), (5, "sku", "duplicate_sku")]


@pytest.mark.parametrize("content, expected", [
    ("", [(0, "file", "empty_file")]),
    ("sku,price\n", [(0, "file", "empty_file")]),
    ("name,price\nx,1\n", [(1, "header", "bad_header")]),
    ("sku,sku\nA,B\n", [(1, "header", "bad_header")]),
    ('sku,name\nA,"open\n', [(2, "row", "malformed_csv")]),
])
def test_broken_csv_files_are_rejected(content: str, expected) -> None:  # noqa: ANN001
    assert problems(content) == expected


def test_json_array_reports_the_line_each_object_starts_on() -> None:
    content = '[\n  {"sku": "A", "price": 1},\n\n  {"sku": "B",\n   "price": -1},\n  {"sku": "C", "x": 1},\n  7\n]'
    assert problems(content, "json") == [(4, "price", "negative"), (6, "x", "unknown_field"),
                                         (7, "row", "malformed_row")]


@pytest.mark.parametrize("content, line", [('{"sku": "A"}', 1), ('[\n{"sku": "A"}\n{"sku": "B"}]', 3),
                                           ('[\n{"sku": "A",}\n]', 2), ('[{"sku": "A"}] x', 1)])
def test_malformed_json_is_rejected_at_its_line(content: str, line: int) -> None:
    assert problems(content, "json")[0][:1] == (line,)


def test_json_values_must_have_the_right_types() -> None:
    content = '{"sku": "A", "price": 9.99, "stock": true, "name": 5, "currency": "usd", "start": [1]}\n'
    assert problems(content, "jsonl") == [(1, "name", "invalid_name"), (1, "currency", "invalid_currency"),
                                          (1, "price", "invalid_integer"), (1, "stock", "invalid_integer"),
                                          (1, "sale_starts_at", "invalid_time")]


def test_written_rows_parse_back_identically() -> None:
    rows = [{"sku": "A", "name": "Alpha, the first", "price": 100, "currency": "EUR", "stock": 3,
             "per_user_limit": 1, "sale_starts_at": "2031-01-01T00:00:00Z", "sale_ends_at": "", "version": 4}]
    for kind in ("csv", "json", "jsonl"):
        out = io.StringIO()
        assert write_rows(rows, out, kind) == 1
        parsed = parse_text(out.getvalue(), kind, NOW)
        assert parsed[0].name == "Alpha, the first" and parsed[0].version == 4 and parsed[0].ends_at is None, kind


@pytest.mark.parametrize("text, expected", [
    ("2031-01-01T00:00:00Z", 1_924_992_000_000), ("2031-01-01T02:00:00+02:00", 1_924_992_000_000),
    ("1924992000000", 1_924_992_000_000), ("now", NOW), ("+90s", NOW + 90_000), ("+2d", NOW + 172_800_000),
    ("open", 0), ("0", 0),
])
def test_moments_accept_absolute_relative_and_open(text: str, expected: int) -> None:
    assert parse_moment(text, NOW) == expected


@pytest.mark.parametrize("text", ["2031-01-01T00:00:00", "tomorrow", "+5y", "-1h", "99999999999999999"])
def test_moments_refuse_ambiguous_or_bad_times(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_moment(text, NOW)


def test_format_moment_is_iso_utc() -> None:
    assert format_moment(1_924_992_000_000) == "2031-01-01T00:00:00Z" and format_moment(0) == ""
