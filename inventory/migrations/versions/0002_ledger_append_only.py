"""stock ledger append-only: triggers refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL) of stock_ledger

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

A correction is a new, compensating row; the database now refuses anything else. Both dialects answer
with the same message, 'stock_ledger is append-only'; PostgreSQL with SQLSTATE 23001 (restrict_violation)
and SQLite with a constraint error, so SQLAlchemy raises IntegrityError on both. The values are written
out here rather than imported, so this revision stays what it was when it ran; inventory.ledger keeps
the same constants and a test checks they agree.

DROP TABLE / DROP SCHEMA still work (they fire no row or TRUNCATE triggers). On SQLite, a later
revision that recreates stock_ledger (Alembic batch "move and copy") drops these triggers with the old
table and must create them again.
"""

from __future__ import annotations

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_MESSAGE = "stock_ledger is append-only"

_PG_FUNCTION = f"""
CREATE FUNCTION stock_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{_MESSAGE}' USING
        ERRCODE = 'restrict_violation',
        DETAIL = TG_OP || ' on stock_ledger refused',
        HINT = 'record a correction as a new, compensating ledger row';
END
$$
"""

# Row triggers for UPDATE/DELETE (an INSERT ... ON CONFLICT DO UPDATE that would touch a row is refused
# too); TRUNCATE only has statement triggers. ENABLE ALWAYS: they fire under session_replication_role =
# replica as well, which otherwise silences ordinary triggers.
_PG_TRIGGERS = {
    "stock_ledger_no_update_delete": "BEFORE UPDATE OR DELETE ON stock_ledger FOR EACH ROW",
    "stock_ledger_no_truncate": "BEFORE TRUNCATE ON stock_ledger FOR EACH STATEMENT",
}

_SQLITE_TRIGGERS = {
    "stock_ledger_no_update": "BEFORE UPDATE ON stock_ledger",
    "stock_ledger_no_delete": "BEFORE DELETE ON stock_ledger",
}


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        for name, when in _PG_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION stock_ledger_append_only()")
            op.execute(f"ALTER TABLE stock_ledger ENABLE ALWAYS TRIGGER {name}")
    elif dialect == "sqlite":
        for name, when in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END")
    else:
        raise NotImplementedError(f"no append-only triggers for dialect {dialect!r}")


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        for name in _PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON stock_ledger")
        op.execute("DROP FUNCTION IF EXISTS stock_ledger_append_only()")
    elif dialect == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
