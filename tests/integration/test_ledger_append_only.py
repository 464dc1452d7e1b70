"""The stock ledger is append-only in PostgreSQL itself: triggers refuse UPDATE, DELETE and TRUNCATE."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import delete, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from inventory.db import make_engine, make_session_factory
from inventory.ledger import APPEND_ONLY_MESSAGE, APPEND_ONLY_SQLSTATE
from inventory.migrations import downgrade, is_up_to_date, upgrade
from inventory.tables import LedgerRow
from tests.ledger_support import append, refused, rows


def _guard_objects(sessions) -> list[str]:
    """Trigger and function names of the append-only guard in the test's schema."""
    with sessions() as s:
        return sorted(s.scalars(text(
            "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relname = 'stock_ledger' AND c.relnamespace = current_schema()::regnamespace "
            "AND NOT t.tgisinternal "
            "UNION ALL SELECT proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace")))


def test_insert_still_appends_rows(pg_sessions) -> None:
    append(pg_sessions, "adj:1-0:HOT", total_delta=10)
    append(pg_sessions, "adj:2-0:HOT", total_delta=-3)  # a correction is a new, compensating row
    assert [(r[1], r[4]) for r in rows(pg_sessions)] == [("adj:1-0:HOT", 10), ("adj:2-0:HOT", -3)]


def test_update_of_a_ledger_row_is_refused_with_a_stable_sqlstate(pg_sessions) -> None:
    append(pg_sessions, "adj:1-0:HOT")
    before = rows(pg_sessions)
    with refused() as info, pg_sessions.begin() as s:
        s.execute(update(LedgerRow).values(total_delta=999))
    assert info.value.orig.pgcode == APPEND_ONLY_SQLSTATE
    assert info.value.orig.diag.message_primary == APPEND_ONLY_MESSAGE
    assert info.value.orig.diag.message_detail == "UPDATE on stock_ledger refused"
    with refused(), pg_sessions.begin() as s:  # through the ORM's unit of work as well
        s.get(LedgerRow, before[0][0]).sold_delta = 5
    with refused(), pg_sessions.begin() as s:  # an upsert that would rewrite an existing row
        stmt = pg_insert(LedgerRow).values(ref="adj:1-0:HOT", sku="HOT", kind="seed", total_delta=999,
                                           sold_delta=0, version=1, created_ms=1)
        s.execute(stmt.on_conflict_do_update(index_elements=["ref"], set_={"total_delta": 999}))
    assert rows(pg_sessions) == before


def test_delete_of_a_ledger_row_is_refused_and_leaves_it_as_it_was(pg_sessions) -> None:
    append(pg_sessions, "adj:1-0:HOT")
    before = rows(pg_sessions)
    with refused() as info, pg_sessions.begin() as s:
        s.execute(delete(LedgerRow).where(LedgerRow.ref == "adj:1-0:HOT"))
    assert info.value.orig.pgcode == APPEND_ONLY_SQLSTATE
    with refused(), pg_sessions.begin() as s:
        s.delete(s.get(LedgerRow, before[0][0]))
    assert rows(pg_sessions) == before


def test_truncate_of_the_ledger_is_refused(pg_sessions) -> None:
    append(pg_sessions, "adj:1-0:HOT")
    before = rows(pg_sessions)
    with refused() as info, pg_sessions.begin() as s:
        s.execute(text("TRUNCATE stock_ledger"))
    assert info.value.orig.diag.message_detail == "TRUNCATE on stock_ledger refused"
    assert rows(pg_sessions) == before


def test_the_guard_also_fires_for_replication_sessions(pg_sessions) -> None:
    with pg_sessions() as s:
        if not s.scalar(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")):
            pytest.skip("setting session_replication_role needs a superuser")
    append(pg_sessions, "adj:1-0:HOT")
    before = rows(pg_sessions)
    with refused(), pg_sessions.begin() as s:  # ordinary triggers are silent under 'replica'; ours are ALWAYS
        s.execute(text("SET LOCAL session_replication_role = replica"))
        s.execute(delete(LedgerRow))
    assert rows(pg_sessions) == before


def test_migrate_up_down_up(migrated_db_url: str) -> None:
    engine = make_engine(migrated_db_url, pool_size=1)
    sessions = make_session_factory(engine)
    try:
        append(sessions, "adj:1-0:HOT")
        assert _guard_objects(sessions) == ["stock_ledger_append_only", "stock_ledger_no_truncate",
                                            "stock_ledger_no_update_delete"]
        downgrade(migrated_db_url, "0001")
        assert _guard_objects(sessions) == [] and not is_up_to_date(migrated_db_url)
        with sessions.begin() as s:  # without the guard the table is an ordinary one again
            s.execute(update(LedgerRow).values(total_delta=11))
        upgrade(migrated_db_url)
        assert is_up_to_date(migrated_db_url)
        with refused(), sessions.begin() as s:
            s.execute(update(LedgerRow).values(total_delta=12))
        assert [r[4] for r in rows(sessions)] == [11]
        downgrade(migrated_db_url, "base")  # dropping the whole table stays possible
        with sessions() as s:
            assert "stock_ledger" not in sa.inspect(s.connection()).get_table_names()
        upgrade(migrated_db_url)
        assert rows(sessions) == []
    finally:
        engine.dispose()
