"""Pure logic of bench/memory.py: per-entry growth, field sizes, dominant parts."""

from __future__ import annotations

import pytest

from bench.memory import dominant, field_bytes, per_entry


def test_per_entry_counts_new_and_grown_keys():
    before = {"a": 100, "b": 0}
    after = {"a": 300, "b": 200, "c": 100}
    assert per_entry(before, after, 10) == pytest.approx(50.0)


def test_per_entry_counts_deleted_keys_as_shrinking():
    assert per_entry({"a": 100}, {}, 4) == pytest.approx(-25.0)


def test_field_bytes_largest_first_with_key_name():
    sizes = field_bytes("fs:{res:abc}", {"u": "user-1", "fp": "f" * 32, "n": "1"})
    assert list(sizes) == ["key name", "field fp", "field u", "field n"]
    assert sizes["key name"] == 12 and sizes["field fp"] == 34 and sizes["field n"] == 2


def test_dominant_orders_by_bytes_with_shares():
    assert dominant({"record": 250.0, "expiry": 50.0}) == ["record: 250 B (83%)", "expiry: 50 B (17%)"]
