"""The stock ledger is append-only in SQLite itself (embedded mode): triggers refuse UPDATE and DELETE."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.orm import Session, sessionmaker

from inventory.db import make_engine, make_session_factory
from inventory.ledger import APPEND_ONLY_MESSAGE
from inventory.migrations import downgrade, is_up_to_date, upgrade
from inventory.tables import LedgerRow
from tests.ledger_support import append, refused, rows


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'flashstock.db'}"
    upgrade(url)
    return url


@pytest.fixture
def sessions(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_url)
    yield make_session_factory(engine)
    engine.dispose()


def test_insert_still_appends_rows(sessions) -> None:
    append(sessions, "adj:1-0:HOT", total_delta=10)
    append(sessions, "adj:2-0:HOT", total_delta=-3)  # a correction is a new, compensating row
    assert [(r[1], r[4]) for r in rows(sessions)] == [("adj:1-0:HOT", 10), ("adj:2-0:HOT", -3)]


def test_update_of_a_ledger_row_is_refused_and_leaves_it_as_it_was(sessions) -> None:
    append(sessions, "adj:1-0:HOT")
    before = rows(sessions)
    with refused() as info, sessions.begin() as s:
        s.execute(update(LedgerRow).values(total_delta=999))
    assert str(info.value.orig) == APPEND_ONLY_MESSAGE
    with refused(), sessions.begin() as s:  # through the ORM's unit of work as well
        s.get(LedgerRow, before[0][0]).sold_delta = 5
    assert rows(sessions) == before


def test_delete_of_a_ledger_row_is_refused_and_leaves_it_as_it_was(sessions) -> None:
    append(sessions, "adj:1-0:HOT")
    before = rows(sessions)
    with refused(), sessions.begin() as s:
        s.execute(delete(LedgerRow))
    with refused(), sessions.begin() as s:
        s.delete(s.get(LedgerRow, before[0][0]))
    assert rows(sessions) == before


def test_insert_or_replace_cannot_delete_a_ledger_row_behind_the_triggers(sessions) -> None:
    append(sessions, "adj:1-0:HOT")
    before = rows(sessions)
    with refused(), sessions.begin() as s:  # REPLACE deletes the old row; make_engine turns on recursive_triggers
        s.execute(text("INSERT OR REPLACE INTO stock_ledger (ref, sku, kind, total_delta, sold_delta, version, "
                       "created_ms) VALUES ('adj:1-0:HOT', 'HOT', 'seed', 999, 0, 1, 1)"))
    assert rows(sessions) == before


def test_migrate_down_removes_the_triggers_and_up_restores_them(sqlite_url: str, sessions) -> None:
    append(sessions, "adj:1-0:HOT")
    downgrade(sqlite_url, "0001")
    assert not is_up_to_date(sqlite_url)
    with sessions.begin() as s:  # without the triggers the table is an ordinary one again
        s.execute(update(LedgerRow).values(total_delta=11))
    upgrade(sqlite_url)
    assert is_up_to_date(sqlite_url)
    with refused(), sessions.begin() as s:
        s.execute(update(LedgerRow).values(total_delta=12))
    assert [r[4] for r in rows(sessions)] == [11]
    downgrade(sqlite_url, "base")  # dropping the whole table stays possible
    upgrade(sqlite_url)
    assert rows(sessions) == []
