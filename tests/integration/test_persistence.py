"""Draining the outbox into PostgreSQL: exactly once in effect, whatever fails when (real Redis + Postgres)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from inventory import Inventory
from inventory.db import make_engine, make_session_factory
from inventory.outbox import parse_entries
from inventory.persistence import GROUP, apply_events, drain_once, persist_now
from inventory.reconcile import run_reconciliation
from inventory.tables import LedgerRow, OrderLineRow, OrderRow, OutboxRejectRow, PaymentEventRow, ProductRow
from tests.helpers import make_product, outbox_length, outbox_pending, stock


def _sell(inv: Inventory, n: int, sku: str = "HOT", qty: int = 1) -> list[str]:
    return [inv.reservations.checkout(inv.reservations.reserve(f"buyer-{sku}-{i}", {sku: qty}).id).id
            for i in range(n)]


def table_state(sessions: Any) -> dict[str, list[tuple]]:
    """Every persisted row (minus bookkeeping timestamps), to compare databases."""
    with sessions() as s:
        return {
            "orders": sorted(s.execute(select(OrderRow.id, OrderRow.reservation_id, OrderRow.user_id,
                                              OrderRow.status, OrderRow.total, OrderRow.created_ms)).all()),
            "lines": sorted(s.execute(select(OrderLineRow.order_id, OrderLineRow.sku, OrderLineRow.qty,
                                             OrderLineRow.unit_price)).all()),
            "payments": sorted(s.execute(select(PaymentEventRow.event_id, PaymentEventRow.order_id,
                                                PaymentEventRow.result)).all()),
            "ledger": sorted(s.execute(select(LedgerRow.ref, LedgerRow.sku, LedgerRow.kind, LedgerRow.total_delta,
                                              LedgerRow.sold_delta)).all()),
            "products": sorted(s.execute(select(ProductRow.sku, ProductRow.name, ProductRow.price,
                                                ProductRow.paused, ProductRow.version)).all()),
        }


def ledger_totals(sessions: Any, sku: str) -> tuple[int, int]:
    with sessions() as s:
        total, sold = s.execute(select(func.sum(LedgerRow.total_delta), func.sum(LedgerRow.sold_delta))
                                .where(LedgerRow.sku == sku)).one()
    return int(total or 0), int(sold or 0)


def test_checkouts_persist_as_exactly_one_order_each_and_reconcile_is_clean(real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=100, price=2500)
    make_product(real_inv, "TEE", stock=40, price=900)
    orders = _sell(real_inv, 60, "HOT") + _sell(real_inv, 10, "TEE", qty=2)
    for n, order_id in enumerate(orders[:20]):
        real_inv.reservations.record_payment(event_id=f"pay-{n}", result="paid" if n % 4 else "failed",
                                             order_id=order_id)

    result = drain_once(real_inv, pg_sessions, batch_size=25)

    assert result.order_events == 70 + 20 and result.backlog == 0
    state = table_state(pg_sessions)
    assert sorted(o[0] for o in state["orders"]) == sorted(orders)
    assert len(state["lines"]) == 70 and len(state["payments"]) == 20
    statuses = {o[0]: o[3] for o in state["orders"]}
    assert sum(s == "payment_failed" for s in statuses.values()) == 5
    assert sum(s == "paid" for s in statuses.values()) == 15
    for sku in ("HOT", "TEE"):
        level = stock(real_inv, sku)
        assert ledger_totals(pg_sessions, sku) == (level.total, level.sold)
    assert ledger_totals(pg_sessions, "HOT") == (100, 55)
    assert drain_once(real_inv, pg_sessions).entries == 0
    report = run_reconciliation(real_inv, pg_sessions, repair=False, full=True)
    assert report.clean and report.skus_checked == 2


def test_applying_the_same_events_again_or_out_of_order_changes_nothing(real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=20)
    orders = _sell(real_inv, 6)
    real_inv.reservations.record_payment(event_id="p1", result="paid", order_id=orders[0])
    real_inv.reservations.record_payment(event_id="p2", result="failed", order_id=orders[1])
    events = parse_entries(real_inv.redis.xrange(real_inv.keys.of_sku("HOT").outbox))
    with pg_sessions.begin() as s:
        apply_events(s, events, now_ms=1)
    once = table_state(pg_sessions)
    for replay in (events, list(reversed(events)), events[::2] + events):
        with pg_sessions.begin() as s:
            apply_events(s, replay, now_ms=2)
    assert table_state(pg_sessions) == once
    statuses = {o[0]: o[3] for o in once["orders"]}
    assert (statuses[orders[0]], statuses[orders[1]], statuses[orders[2]]) == ("paid", "payment_failed",
                                                                                "pending_payment")


def test_status_events_seen_before_their_order_still_end_in_the_latest_status(real_inv: Inventory,
                                                                              pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=5)
    order = _sell(real_inv, 1)[0]
    real_inv.reservations.record_payment(event_id="late-fail", result="failed", order_id=order)
    created, failed = [e for e in parse_entries(real_inv.redis.xrange(real_inv.keys.of_sku("HOT").outbox))[2:]]
    for event in (failed, created):  # a redelivered 'created' after 'payment_failed'
        with pg_sessions.begin() as s:
            apply_events(s, [event], now_ms=1)
    state = table_state(pg_sessions)
    assert [o[3] for o in state["orders"]] == ["payment_failed"]
    assert ledger_totals(pg_sessions, "HOT")[1] == 0


def test_a_crash_between_commit_and_acknowledge_redelivers_without_duplicates(
        real_inv: Inventory, pg_sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    make_product(real_inv, "HOT", stock=30)
    orders = _sell(real_inv, 12)
    calls = {"n": 0}
    real_pipeline = real_inv.redis.pipeline

    def pipeline(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the first pipeline that acknowledges fails
        pipe = real_pipeline(*args, **kwargs)  # a Pipeline or, on the cluster, a ClusterPipeline
        real_xack, real_execute, acks = pipe.xack, pipe.execute, []

        def xack(*a, **kw):  # noqa: ANN002, ANN003, ANN202
            acks.append(a)
            return real_xack(*a, **kw)

        def execute(*a, **kw):  # noqa: ANN002, ANN003, ANN202
            if acks and calls["n"] == 0:
                calls["n"] += 1
                pipe.reset()
                raise redis.ConnectionError("connection lost after commit")
            return real_execute(*a, **kw)

        pipe.xack, pipe.execute = xack, execute
        return pipe

    monkeypatch.setattr(real_inv.redis, "pipeline", pipeline)
    with pytest.raises(redis.ConnectionError):
        drain_once(real_inv, pg_sessions, batch_size=5, consumer="crashy")
    monkeypatch.undo()
    assert outbox_pending(real_inv, GROUP) == 5
    after_crash = table_state(pg_sessions)
    assert len(after_crash["ledger"]) == 1 + 3  # the committed batch: product, seed, three sales

    drain_once(real_inv, pg_sessions, consumer="crashy")  # the same consumer re-reads its pending entries

    state = table_state(pg_sessions)
    assert sorted(o[0] for o in state["orders"]) == sorted(orders)
    assert ledger_totals(pg_sessions, "HOT") == (30, 12)
    assert outbox_length(real_inv) == 0
    assert outbox_pending(real_inv, GROUP) == 0


def test_unreachable_database_leaves_entries_in_the_outbox_until_it_is_back(real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=10)
    orders = _sell(real_inv, 4)
    dead = make_engine("postgresql+psycopg2://postgres@127.0.0.1:1/test", pool_size=1)
    with pytest.raises(OperationalError):
        drain_once(real_inv, make_session_factory(dead), consumer="first")
    dead.dispose()
    assert outbox_length(real_inv) == 6

    result = drain_once(real_inv, pg_sessions, consumer="second", claim_idle_ms=0)  # claims the stuck entries

    assert result.entries == 6 and result.backlog == 0
    assert sorted(o[0] for o in table_state(pg_sessions)["orders"]) == sorted(orders)


def test_ledger_records_every_stock_change_so_totals_can_be_recomputed(real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=10)
    real_inv.catalog.adjust_stock("HOT", add=5)
    real_inv.catalog.adjust_stock("HOT", set_total=12)
    order = _sell(real_inv, 3)[0]
    real_inv.reservations.record_payment(event_id="f", result="failed", order_id=order)
    persist_now(real_inv, pg_sessions)
    with pg_sessions() as s:
        kinds = sorted(s.scalars(select(LedgerRow.kind)))
    assert kinds == ["admin", "admin", "returned", "seed", "sold", "sold", "sold"]
    level = stock(real_inv)
    assert ledger_totals(pg_sessions, "HOT") == (level.total, level.sold) == (12, 2)


def test_a_malformed_entry_is_kept_as_a_reject_and_does_not_block_the_rest(real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=3)
    real_inv.redis.xadd(real_inv.keys.of_sku("HOT").outbox, {"type": "order_created", "order": "garbage"})
    orders = _sell(real_inv, 2)
    result = drain_once(real_inv, pg_sessions)
    assert result.rejects == 1 and result.backlog == 0
    with pg_sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutboxRejectRow)) == 1
    assert sorted(o[0] for o in table_state(pg_sessions)["orders"]) == sorted(orders)


def test_product_changes_keep_the_newest_version_and_ignore_the_recovering_pause(real_inv: Inventory,
                                                                                pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=3, price=100)
    real_inv.catalog.configure("HOT", price=250, paused=True)
    real_inv.catalog.set_recovering("HOT", True)
    persist_now(real_inv, pg_sessions)
    with pg_sessions() as s:
        row = s.get(ProductRow, "HOT")
        assert (row.price, row.paused) == (250, True)


def test_consumers_of_dead_processes_that_hold_nothing_are_forgotten(real_inv: Inventory, pg_sessions) -> None:
    from inventory.persistence import prune_consumers

    make_product(real_inv, "HOT", stock=3)
    drain_once(real_inv, pg_sessions, consumer="gone-1")
    drain_once(real_inv, pg_sessions, consumer="gone-2")
    real_inv.redis.xadd(real_inv.keys.of_sku("HOT").outbox, {"type": "noise"})
    real_inv.redis.xreadgroup(GROUP, "busy", {real_inv.keys.of_sku("HOT").outbox: ">"})  # holds one pending entry
    time.sleep(0.05)
    # both idle consumers, in every partition's outbox group (one on a single node, 16 on a cluster)
    assert prune_consumers(real_inv, idle_ms=5) == 2 * len(real_inv.keys.parts)
    names = [c["name"] for c in real_inv.redis.xinfo_consumers(real_inv.keys.of_sku("HOT").outbox, GROUP)]
    assert names in ([b"busy"], ["busy"])
