"""SQLAlchemy engine and session factory for the system of record (PostgreSQL, or SQLite embedded)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


# libpq's limit on opening a connection (TCP connect and the server's first answer): a database that
# does not answer fails a drain in seconds, so a worker told to stop is not stuck in a connect.
CONNECT_TIMEOUT_SECONDS = 3


def connect_args(url: str) -> dict[str, Any]:
    """Driver options for the URL: a bounded connect for PostgreSQL, nothing for SQLite."""
    return {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if url.startswith("postgresql") else {}


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for the URL; SQLite gets foreign keys, WAL and recursive triggers, Postgres a bounded pool."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            # Without it, INSERT OR REPLACE deletes a conflicting row without firing DELETE triggers,
            # which would slip past the append-only ledger's guard (migration 0002).
            cursor.execute("PRAGMA recursive_triggers=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                         pool_timeout=5, connect_args=connect_args(url))


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions used as `with factory.begin() as session:`."""
    return sessionmaker(engine, expire_on_commit=False)
