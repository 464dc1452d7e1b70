"""product buckets: PostgreSQL remembers how many stock buckets a split product has active

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Each product_configured event carries the SKU's active bucket count ('bk'; a split publishes its layout
through configure_product). A rebuild after a Redis data loss restores that count, so a shrunk product
comes back with the buckets it had, not with every bucket it ever had. 0: not split, or split before
this revision (the rebuild then keeps every bucket active, as before).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.add_column(sa.Column('buckets', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column('buckets')
