"""The embedded default (fakeredis + SQLite) persists, reconciles and recovers through the same models."""

from __future__ import annotations

from pathlib import Path

import fakeredis
import pytest
from sqlalchemy import func, select

from inventory import Inventory, Settings
from tests.clocks import ManualClock
from inventory.db import make_engine, make_session_factory
from inventory.housekeeping import Housekeeper
from inventory.migrations import is_up_to_date, upgrade
from inventory.persistence import drain_once
from inventory.reconcile import run_reconciliation
from inventory.recovery import check_recovery
from inventory.tables import LedgerRow, OrderRow
from tests.helpers import make_product, stock


@pytest.fixture
def sqlite_sessions(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'flashstock.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def embedded() -> Inventory:
    return Inventory(fakeredis.FakeRedis(server=fakeredis.FakeServer()), Settings(key_prefix="emb"), ManualClock())


def _sell(inv: Inventory, n: int, sku: str = "HOT") -> list[str]:
    return [inv.reservations.checkout(inv.reservations.reserve(f"u{i}", {sku: 1}).id).id for i in range(n)]


def test_migrations_bring_a_new_sqlite_file_up_to_date(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert not is_up_to_date(url)
    upgrade(url)
    upgrade(url)  # repeating is harmless
    assert is_up_to_date(url)


def test_embedded_drain_persists_orders_once_into_sqlite(embedded: Inventory, sqlite_sessions) -> None:
    make_product(embedded, "HOT", stock=10)
    orders = _sell(embedded, 4)
    assert drain_once(embedded, sqlite_sessions).entries == 2 + 4
    assert drain_once(embedded, sqlite_sessions).entries == 0
    with sqlite_sessions() as s:
        assert sorted(s.scalars(select(OrderRow.id))) == sorted(orders)
        assert s.scalar(select(func.sum(LedgerRow.sold_delta))) == 4
    assert run_reconciliation(embedded, sqlite_sessions, repair=True).clean


def test_embedded_restart_rebuilds_the_fresh_in_memory_redis_from_sqlite(embedded: Inventory, sqlite_sessions) -> None:
    check_recovery(embedded, sqlite_sessions)
    make_product(embedded, "HOT", stock=10)
    _sell(embedded, 3)
    drain_once(embedded, sqlite_sessions)
    restarted = Inventory(fakeredis.FakeRedis(server=fakeredis.FakeServer()), embedded.settings, ManualClock())
    assert check_recovery(restarted, sqlite_sessions).state == "rebuilt"
    level = stock(restarted)
    assert (level.total, level.sold, level.available) == (10, 3, 7)
    assert check_recovery(restarted, sqlite_sessions).state == "ok"


def test_housekeeper_round_persists_sweeps_and_reconciles(embedded: Inventory, sqlite_sessions) -> None:
    make_product(embedded, "HOT", stock=5)
    _sell(embedded, 2)
    embedded.reservations.reserve("late", {"HOT": 1}, ttl_seconds=1)
    embedded.ctx.clock.advance(2)  # type: ignore[attr-defined]
    done = Housekeeper(embedded, sqlite_sessions).run_once()
    assert done["persist"].order_events == 2
    assert done["expire"].units_returned == 1
    assert done["reconcile"].clean
    assert stock(embedded).available == 3


def test_start_embedded_migrates_recovers_and_persists_in_the_background(embedded: Inventory, tmp_path: Path) -> None:
    from inventory.housekeeping import active, start_embedded

    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    keeper = start_embedded(embedded, url)
    try:
        assert active() is keeper
        make_product(embedded, "HOT", stock=3)
        order = _sell(embedded, 1)[0]
        keeper.wake()
        engine = make_engine(url)
        sessions = make_session_factory(engine)

        def persisted() -> bool:
            with sessions() as s:
                return s.get(OrderRow, order) is not None

        import time
        deadline = time.monotonic() + 20
        while not persisted() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert persisted()
        engine.dispose()
    finally:
        keeper.stop()
    assert active() is None


def test_first_drain_on_an_empty_embedded_redis_creates_the_group_instead_of_failing(
    embedded: Inventory, sqlite_sessions
) -> None:  # noqa: ANN001
    assert drain_once(embedded, sqlite_sessions).entries == 0
    make_product(embedded, stock=1)
    assert drain_once(embedded, sqlite_sessions).stock_events == 1
