"""request ids: orders and payment_events remember the X-Request-ID of the call that created them

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

The Lua scripts write the caller's request id into each order event of the outbox ('rid'); the drain
stores it with the row the event creates, so one id finds a buyer's request, its outbox entry and its
PostgreSQL write. Nullable: rows written before this revision, re-emitted events and calls without an
id have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_TABLES = ("orders", "payment_events")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('request_id', sa.String(length=128), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('request_id')
