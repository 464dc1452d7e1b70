"""A split's layout goes through the outbox: PostgreSQL keeps each product's active bucket count."""

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
from inventory.outbox import ProductConfigured, parse_entries, parse_entry
from inventory.persistence import drain_once
from inventory.tables import ProductRow
from tests.helpers import make_product, table_columns


@pytest.fixture
def sqlite_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'layout.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def _configured(inv: Inventory, sku: str = "HOT") -> list[ProductConfigured]:
    entries = parse_entries(inv.redis.xrange(inv.keys.of_sku(sku).outbox))
    return [e for e in entries if isinstance(e, ProductConfigured) and e.sku == sku]


def _persisted_buckets(sessions: sessionmaker[Session], sku: str = "HOT") -> int | None:
    with sessions() as session:
        return session.scalar(select(ProductRow.buckets).where(ProductRow.sku == sku))


def test_every_split_and_shrink_reports_the_active_count_and_postgres_keeps_the_last(
        inv: Inventory, sqlite_sessions: sessionmaker[Session]) -> None:
    make_product(inv, "HOT", stock=40)
    assert _configured(inv)[-1].buckets == 0  # not split
    inv.buckets.split("HOT", 6)
    assert _configured(inv)[-1].buckets == 6
    drain_once(inv, sqlite_sessions)
    assert _persisted_buckets(sqlite_sessions) == 6
    inv.buckets.split("HOT", 2)
    inv.catalog.configure("HOT", price=500)  # any later change carries the layout it finds
    assert [e.buckets for e in _configured(inv)][-2:] == [2, 2]
    drain_once(inv, sqlite_sessions)
    assert _persisted_buckets(sqlite_sessions) == 2


def test_an_entry_from_before_bk_was_sent_leaves_the_stored_count_alone(
        inv: Inventory, sqlite_sessions: sessionmaker[Session]) -> None:
    make_product(inv, "HOT", stock=40)
    inv.buckets.split("HOT", 4)
    newest = _configured(inv)[-1]
    drain_once(inv, sqlite_sessions)
    old_style = {"type": "product_configured", "sku": "HOT", "name": newest.name, "price": "900", "cur": "USD",
                 "limit": "0", "start": "0", "end": "0", "paused": "0", "ver": str(newest.version + 1), "ts": "1"}
    inv.redis.xadd(inv.keys.of_sku("HOT").outbox, old_style)
    drain_once(inv, sqlite_sessions)
    with sqlite_sessions() as session:
        row = session.get(ProductRow, "HOT")
        assert row is not None and (row.price, row.buckets) == (900, 4)


@pytest.mark.parametrize("bk, expected", [("", 0), ("7", 7), (None, None)])
def test_the_event_parses_bk_as_a_count_and_its_absence_as_unknown(bk: str | None, expected: int | None) -> None:
    raw = {"type": "product_configured", "sku": "S", "name": "S", "price": "1", "cur": "USD", "limit": "0",
           "start": "0", "end": "0", "paused": "0", "ver": "2", "ts": "5"}
    if bk is not None:
        raw["bk"] = bk
    event = parse_entry("1-0", raw)
    assert isinstance(event, ProductConfigured) and event.buckets == expected


@pytest.mark.parametrize("field, value", [("bk", "0"), ("bk", "65"), ("bkn", "x"), ("bkp", "1,a"), ("bq", "2")])
def test_configure_refuses_a_malformed_layout_field_and_changes_nothing(inv: Inventory, field: str,
                                                                       value: str) -> None:
    make_product(inv, "HOT", stock=5)
    keys = inv.keys.of_sku("HOT")
    before = inv.redis.hgetall(keys.sku("HOT").stock), inv.redis.xlen(keys.outbox)
    with pytest.raises(InvalidArgument):
        inv.ctx.run("configure_product", [keys.sku("HOT").stock, keys.catalog, keys.dirty, keys.outbox],
                    ["HOT", "", "", field, value])
    assert (inv.redis.hgetall(keys.sku("HOT").stock), inv.redis.xlen(keys.outbox)) == before


def test_migration_0005_adds_and_removes_the_buckets_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    downgrade(url, "0004")
    assert "buckets" not in table_columns(url, "products")
    upgrade(url)
    assert "buckets" in table_columns(url, "products")
