"""A call's request id travels into its outbox entries and the rows persisted from them."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from inventory import Inventory
from inventory.db import make_engine, make_session_factory
from inventory.errors import InvalidArgument
from inventory.migrations import downgrade, upgrade
from inventory.outbox import OrderEvent, parse_entries
from inventory.persistence import drain_once
from inventory.tables import OrderRow, PaymentEventRow
from tests.helpers import make_product, stock, table_columns


@pytest.fixture
def sqlite_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'rid.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def _order_events(inv: Inventory) -> list[OrderEvent]:
    return [e for e in parse_entries(inv.redis.xrange(inv.keys.of_sku("HOT").outbox)) if isinstance(e, OrderEvent)]


def test_checkout_and_payment_write_their_request_ids_into_the_outbox_entries(inv: Inventory) -> None:
    make_product(inv, "HOT", stock=5)
    held = inv.reservations.reserve("alice", {"HOT": 2})
    order = inv.reservations.checkout(held.id, request_id="req-checkout-1")
    inv.reservations.record_payment(event_id="evt-1", result="paid", order_id=order.id, request_id="req-hook-1")

    created, paid = _order_events(inv)
    assert (created.kind, created.request_id) == ("order_created", "req-checkout-1")
    assert (paid.kind, paid.request_id) == ("order_paid", "req-hook-1")


def test_calls_without_a_request_id_write_an_empty_one(inv: Inventory) -> None:
    make_product(inv, "HOT", stock=5)
    held = inv.reservations.reserve("alice", {"HOT": 1})
    inv.reservations.record_payment(event_id="evt-1", result="paid", reservation_id=held.id)

    assert [(e.kind, e.request_id) for e in _order_events(inv)] == [("order_created", ""), ("order_paid", "")]


@pytest.mark.parametrize("bad", ["x" * 129, "has space", "tab\tid", "new\nline", "caf\u00e9"])
def test_checkout_refuses_a_malformed_request_id_before_any_write(inv: Inventory, bad: str) -> None:
    make_product(inv, "HOT", stock=5)
    held = inv.reservations.reserve("alice", {"HOT": 2})
    before = inv.redis.xlen(inv.keys.of_sku("HOT").outbox)

    with pytest.raises(InvalidArgument):
        inv.reservations.checkout(held.id, request_id=bad)

    assert stock(inv).held == 2 and inv.redis.xlen(inv.keys.of_sku("HOT").outbox) == before


@pytest.mark.parametrize("script", ["checkout", "record_payment"])
def test_the_scripts_themselves_refuse_a_malformed_request_id(inv: Inventory, script: str) -> None:
    make_product(inv, "HOT", stock=5)
    held = inv.reservations.reserve("alice", {"HOT": 2})
    token, keys = held.id[2:], inv.keys
    part = keys.of_token(token)  # the reservation's partition, HOT's
    head = ["alice", "o_" + token] if script == "checkout" else ["evt-1", "paid", "o_" + token]
    before = inv.redis.xlen(part.outbox)

    with pytest.raises(InvalidArgument):
        inv.ctx.run(script, [part.reservation(token), part.expiries, part.dirty, part.outbox,
                             part.user_orders("alice"), *inv.ctx.line_keys(["HOT"], token),
                             part.record_bucket(token)],
                    [token, *head, 60_000, "HOT", "bad id"])

    assert stock(inv).held == 2 and inv.redis.xlen(part.outbox) == before


def test_persisted_orders_and_payments_keep_the_request_id_that_created_them(
        inv: Inventory, sqlite_sessions: sessionmaker[Session]) -> None:
    make_product(inv, "HOT", stock=5)
    order = inv.reservations.checkout(inv.reservations.reserve("alice", {"HOT": 1}).id, request_id="req-co")
    inv.reservations.record_payment(event_id="evt-1", result="paid", order_id=order.id, request_id="req-pay")
    anonymous = inv.reservations.checkout(inv.reservations.reserve("bob", {"HOT": 1}).id)

    drain_once(inv, sqlite_sessions)

    with sqlite_sessions() as s:
        assert dict(s.execute(select(OrderRow.id, OrderRow.request_id)).all()) == {
            order.id: "req-co", anonymous.id: None}
        assert s.execute(select(PaymentEventRow.event_id, PaymentEventRow.request_id)).all() == [
            ("evt-1", "req-pay")]


def test_migration_0004_adds_and_removes_the_request_id_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    downgrade(url, "0003")
    assert "request_id" not in table_columns(url, "orders")
    upgrade(url)
    for table in ("orders", "payment_events"):
        assert "request_id" in table_columns(url, table)
