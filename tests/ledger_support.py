"""Checks of the append-only stock ledger shared by the SQLite (unit) and PostgreSQL (integration) tests."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import pytest
from sqlalchemy import exc, insert, select
from sqlalchemy.orm import Session, sessionmaker

from inventory.ledger import APPEND_ONLY_MESSAGE
from inventory.tables import LedgerRow

COLUMNS = (LedgerRow.id, LedgerRow.ref, LedgerRow.sku, LedgerRow.kind, LedgerRow.total_delta,
           LedgerRow.sold_delta, LedgerRow.order_id, LedgerRow.version, LedgerRow.created_ms)


def append(sessions: sessionmaker[Session], ref: str, *, sku: str = "HOT", total_delta: int = 10) -> None:
    """Insert one ledger row (an admin stock change)."""
    with sessions.begin() as s:
        s.execute(insert(LedgerRow).values(ref=ref, sku=sku, kind="seed", total_delta=total_delta,
                                           sold_delta=0, version=1, created_ms=1))


def rows(sessions: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    """Every ledger row, every column, in id order."""
    with sessions() as s:
        return [tuple(r) for r in s.execute(select(*COLUMNS).order_by(LedgerRow.id))]


@contextmanager
def refused() -> Iterator[pytest.ExceptionInfo[exc.IntegrityError]]:
    """Expect the append-only triggers to refuse the statement (IntegrityError on both dialects)."""
    with pytest.raises(exc.IntegrityError, match=APPEND_ONLY_MESSAGE) as info:
        yield info
