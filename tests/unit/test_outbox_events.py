"""Outbox entries written by the scripts parse into typed events with stable ledger refs."""

from __future__ import annotations

import fakeredis

from inventory import Inventory, Settings
from tests.clocks import ManualClock
from inventory.models import Line
from inventory.outbox import (
    Malformed,
    OrderEvent,
    ProductConfigured,
    StockAdjusted,
    StreamId,
    movements,
    order_event_fields,
    parse_entries,
    parse_entry,
)
from tests.helpers import make_product


def _inv() -> Inventory:
    return Inventory(fakeredis.FakeRedis(server=fakeredis.FakeServer()), Settings(key_prefix="u"), ManualClock())


def _events(inv: Inventory) -> list:
    return parse_entries(inv.redis.xrange(inv.keys.parts[0].outbox))


def test_script_entries_parse_into_typed_events_in_stream_order() -> None:
    inv = _inv()
    make_product(inv, "HOT", stock=5, price=1500)
    held = inv.reservations.reserve("alice", {"HOT": 2})
    order = inv.reservations.checkout(held.id)
    inv.reservations.record_payment(event_id="evt-1", result="failed", order_id=order.id)

    configured, adjusted, created, failed = _events(inv)
    assert isinstance(configured, ProductConfigured) and configured.sku == "HOT" and configured.price == 1500
    assert isinstance(adjusted, StockAdjusted) and (adjusted.delta, adjusted.total, adjusted.reason) == (5, 5, "seed")
    assert isinstance(created, OrderEvent) and created.kind == "order_created"
    assert created.order_id == order.id and created.reservation_id == held.id and created.user_id == "alice"
    assert created.lines == (Line("HOT", 2, 1500),) and created.status == "pending_payment"
    assert isinstance(failed, OrderEvent) and failed.status == "payment_failed" and failed.event_id == "evt-1"


def test_movements_give_one_ref_per_fact_so_redelivery_dedupes() -> None:
    inv = _inv()
    make_product(inv, "HOT", stock=5)
    order = inv.reservations.checkout(inv.reservations.reserve("bob", {"HOT": 3}).id)
    inv.reservations.record_payment(event_id="e", result="failed", order_id=order.id)
    moves = [m for event in _events(inv) for m in movements(event)]
    assert [(m.kind, m.total_delta, m.sold_delta) for m in moves] == \
        [("seed", 5, 0), ("sold", 0, 3), ("returned", 0, -3)]
    assert moves[1].ref == f"sold:{order.id}:HOT" and moves[2].ref == f"returned:{order.id}:HOT"
    assert [m.ref for e in _events(inv) for m in movements(e)] == [m.ref for m in moves]


def test_paid_and_refund_events_move_no_stock() -> None:
    event = parse_entry("1-0", order_event_fields("order_paid", "o_abcdefghij", "abcdefghij", "u",
                                                  [Line("A", 1, 5)], "ev", 7))
    assert isinstance(event, OrderEvent) and movements(event) == []


def test_unknown_or_broken_entries_become_malformed_not_exceptions() -> None:
    assert isinstance(parse_entry(b"1-0", {b"type": b"mystery"}), Malformed)
    assert isinstance(parse_entry("1-1", {"type": "order_created", "order": "o_x"}), Malformed)
    broken_lines = {**order_event_fields("order_created", "o_abcdefghij", "abcdefghij", "u", [], "", 1),
                    "lines": "HOT:0:1500"}
    assert isinstance(parse_entry("1-2", broken_lines), Malformed)
    assert isinstance(parse_entry("1-3", {"type": "stock_adjusted", "sku": "A", "delta": "x", "total": "1",
                                          "ver": "1", "reason": "seed", "ts": "1"}), Malformed)


def test_stream_ids_compare_numerically() -> None:
    assert StreamId.parse("10-0") > StreamId.parse("9-5")
    assert StreamId.parse(b"5-10") > StreamId.parse("5-9")
    assert str(StreamId.parse("12-3")) == "12-3"
