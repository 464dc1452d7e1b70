"""Bounded reads of reconciliation: slices add up to the whole, on fakeredis and on redis-server."""

from __future__ import annotations

import pytest

from inventory import Inventory, reconcile_reads
from inventory.holds import read_open_holds
from inventory.outbox import StockAdjusted
from inventory.reconcile_reads import OutboxView, lex_members, read_skus, read_watched, scan_set
from tests.helpers import make_product


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("OUTBOX_SLICE", 3), ("HOLDS_SLICE", 4), ("BATCH_HOLDS", 5), ("BATCH_SKUS", 2),
                        ("SET_SLICE", 2)):
        monkeypatch.setattr(reconcile_reads, name, value)


def test_outbox_view_reads_every_entry_in_slices_then_only_the_new_tail(inv: Inventory, tiny: None) -> None:
    for n in range(4):
        make_product(inv, f"S{n}", stock=5)  # 2 entries each
    part = inv.keys.of_sku("S1")  # one partition's stream: all four SKUs on one node, S1's share on a cluster
    entries = 2 * sum(inv.keys.of_sku(f"S{n}") == part for n in range(4))
    view = OutboxView(inv.redis, part.outbox)
    assert view.refresh() == entries and len(view.events) == entries
    inv.catalog.adjust_stock("S1", add=2)
    assert view.refresh() == 1 and view.refresh() == 0
    assert [type(e).__name__ for e in view.for_sku("S1")] == ["ProductConfigured", "StockAdjusted", "StockAdjusted"]
    assert isinstance(view.for_sku("S1")[-1], StockAdjusted) and view.for_sku("S1")[-1].delta == 2


def test_read_skus_matches_whole_reads_for_small_and_large_skus(inv: Inventory, tiny: None) -> None:
    for n in range(3):
        make_product(inv, f"S{n}", stock=50)
    for i in range(30):  # S0: 30 holds (over one slice; the 17th on in hold buckets); S1: 1; S2: none
        inv.reservations.reserve(f"u{i}", {"S0": 1, "S1": 1} if i == 0 else {"S0": 1})
    reads = read_skus(inv.redis, ["S0", "S1", "S2", "NOPE"], inv.keys.sku)
    for sku in ("S0", "S1", "S2"):
        keys = inv.keys.sku(sku)
        whole = {(t, str(q), u) for t, q, u, _ in read_open_holds(inv.redis, keys)}
        assert {(t, str(q), u) for t, q, u in reads[sku].holds} == whole
        assert reads[sku].fields["held"] == str(len(whole))
    assert reads["NOPE"].fields == {} and reads["NOPE"].holds == []
    assert read_watched(inv.redis, inv.keys.sku("S0")).holds == reads["S0"].holds


def test_set_and_catalogue_walks_return_every_member(inv: Inventory, tiny: None) -> None:
    skus = [f"S{n}" for n in range(7)]
    for sku in skus:
        make_product(inv, sku, stock=1)
    inv.redis.sadd(inv.keys.parts[0].dirty, *skus)  # the walk, not the partitioning, is under test here
    assert scan_set(inv.redis, inv.keys.parts[0].dirty) == set(skus)
    for part in inv.keys.parts:  # each partition's catalogue lists its own SKUs
        assert lex_members(inv.redis, part.catalog) == sorted(s for s in skus if inv.keys.of_sku(s) == part)
