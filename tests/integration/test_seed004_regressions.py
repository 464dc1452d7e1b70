"""Seed 004's flash-sale checkout scenarios as regressions, checked in Redis and in Postgres (real servers)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from inventory import Inventory
from inventory.errors import InventoryError, ReservationClosed
from inventory.persistence import persist_now
from inventory.reconcile import run_reconciliation
from inventory.tables import LedgerRow, OrderRow, PaymentEventRow
from tests.helpers import assert_invariant, make_product, stock


def _count(sessions, column, *where) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count(column)).where(*where)) or 0)


def _sold_in_ledger(sessions, sku: str = "HOT") -> int:
    with sessions() as s:
        return int(s.scalar(select(func.sum(LedgerRow.sold_delta)).where(LedgerRow.sku == sku)) or 0)


def _buy(inv: Inventory, user: str, qty: int = 1) -> str:
    try:
        return inv.reservations.checkout(inv.reservations.reserve(user, {"HOT": qty}).id).id
    except InventoryError as error:
        return error.code


def _settle(inv: Inventory, sessions) -> None:
    persist_now(inv, sessions)
    assert run_reconciliation(inv, sessions, repair=True, full=True).clean
    assert_invariant(stock(inv))


def test_stock_10_and_50_concurrent_single_unit_buyers_make_exactly_10_orders(real_inv: Inventory,
                                                                             pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=10)
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda n: _buy(real_inv, f"u{n}"), range(50)))
    orders = [o for o in outcomes if o.startswith("o_")]
    assert len(orders) == 10 and outcomes.count("sold_out") == 40
    _settle(real_inv, pg_sessions)
    assert _count(pg_sessions, OrderRow.id) == 10 and _sold_in_ledger(pg_sessions) == 10


def test_the_same_failed_payment_webhook_20_times_returns_stock_once(real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=10)
    order = _buy(real_inv, "payer", qty=4)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: real_inv.reservations.record_payment(
            event_id="evt-fail-1", result="failed", order_id=order).replayed, range(20)))
    assert outcomes.count(False) == 1 and outcomes.count(True) == 19
    assert (stock(real_inv).available, stock(real_inv).sold) == (10, 0)
    _settle(real_inv, pg_sessions)
    assert _count(pg_sessions, PaymentEventRow.event_id) == 1
    assert _count(pg_sessions, LedgerRow.id, LedgerRow.kind == "returned") == 1
    assert _sold_in_ledger(pg_sessions) == 0


def test_stock_50_ten_orders_of_5_five_fail_then_25_more_succeed_and_the_next_is_refused(
        real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=50)
    orders = [_buy(real_inv, f"big{n}", qty=5) for n in range(10)]
    assert all(o.startswith("o_") for o in orders) and stock(real_inv).available == 0
    for n, order in enumerate(orders[:5]):
        real_inv.reservations.record_payment(event_id=f"fail-{n}", result="failed", order_id=order)
    assert stock(real_inv).available == 25
    with ThreadPoolExecutor(8) as pool:
        more = list(pool.map(lambda n: _buy(real_inv, f"small{n}"), range(25)))
    assert all(o.startswith("o_") for o in more)
    assert _buy(real_inv, "one-too-many") == "sold_out"
    _settle(real_inv, pg_sessions)
    assert _count(pg_sessions, OrderRow.id) == 35
    assert _count(pg_sessions, OrderRow.id, OrderRow.status == "payment_failed") == 5
    assert _sold_in_ledger(pg_sessions) == 50 == stock(real_inv).sold


def test_a_failed_payment_before_checkout_returns_stock_exactly_once(real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=10)
    held = real_inv.reservations.reserve("early", {"HOT": 3}, ttl_seconds=60)
    real_inv.reservations.record_payment(event_id="early-fail", result="failed", reservation_id=held.id)
    real_inv.reservations.record_payment(event_id="early-fail", result="failed", reservation_id=held.id)
    assert stock(real_inv).available == 10
    with pytest.raises(ReservationClosed):
        real_inv.reservations.checkout(held.id)
    real_inv.reservations.release(held.id)
    real_inv.ctx.clock.advance(120)  # type: ignore[attr-defined]
    assert real_inv.reservations.expire_due().units_returned == 0
    assert (stock(real_inv).available, stock(real_inv).held, stock(real_inv).sold) == (10, 0, 0)
    _settle(real_inv, pg_sessions)
    assert _count(pg_sessions, OrderRow.id) == 0 and _sold_in_ledger(pg_sessions) == 0
