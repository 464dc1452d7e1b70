"""sale_switch: the global sale switch as last set, so a rebuild of Redis restores it

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sale_switch",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("entry_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("entry_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("sale_switch")
