"""The system of record in SQL (PostgreSQL in production, SQLite embedded): SQLAlchemy 2.0 models."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Ledger kinds that move sold units; every other kind (seed, admin, ...) changes the total.
SOLD, RETURNED = "sold", "returned"

# Order statuses by how far along they are: persistence only ever moves an order forward,
# so events applied out of order (a redelivered 'created' after 'paid') cannot move it back.
STATUS_RANK = {"pending_payment": 0, "paid": 1, "payment_failed": 1, "payment_expired": 1, "refund_required": 2}
# Statuses whose lines hold sold units (pending_payment and paid); others returned or never took stock.
SOLD_STATUSES = ("pending_payment", "paid")


class Base(DeclarativeBase):
    """Declarative base of every flashstock table."""


class ProductRow(Base):
    """Catalogue data and sale settings of one SKU, as last configured (highest version wins)."""

    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    price: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    per_user_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    starts_at_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    ends_at_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    # Active stock buckets (0: not split), as Redis last reported: a rebuild restores this layout.
    buckets: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class OrderRow(Base):
    """One order per reservation; its status only moves forward (see STATUS_RANK)."""

    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reservation_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(32))
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    # X-Request-ID of the call that created the order (checkout, or a payment for an open hold).
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)

    lines: Mapped[list["OrderLineRow"]] = relationship(back_populates="order", order_by="OrderLineRow.sku")


class OrderLineRow(Base):
    """One SKU of an order with the unit price the buyer was quoted (minor units)."""

    __tablename__ = "order_lines"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    qty: Mapped[int] = mapped_column(BigInteger)
    unit_price: Mapped[int] = mapped_column(BigInteger)

    order: Mapped[OrderRow] = relationship(back_populates="lines")

    __table_args__ = (Index("ix_order_lines_sku", "sku"),)


class PaymentEventRow(Base):
    """A payment provider's event, recorded once per event id."""

    __tablename__ = "payment_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    result: Mapped[str] = mapped_column(String(16))
    received_ms: Mapped[int] = mapped_column(BigInteger)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the webhook call's X-Request-ID


class LedgerRow(Base):
    """Append-only stock movement; SUM(total_delta) and SUM(sold_delta) per SKU are the persisted counters.

    The database refuses UPDATE and DELETE of these rows (triggers of migration 0002); corrections are
    new rows.

    `ref` makes each fact unique: 'sold:<order>:<sku>', 'returned:<order>:<sku>', 'adj:<stream id>:<sku>'.
    """

    __tablename__ = "stock_ledger"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    ref: Mapped[str] = mapped_column(String(160), unique=True)
    sku: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    total_delta: Mapped[int] = mapped_column(BigInteger, default=0)
    sold_delta: Mapped[int] = mapped_column(BigInteger, default=0)
    order_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    created_ms: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_stock_ledger_sku", "sku"),)


class ReconcileRunRow(Base):
    """One reconciliation run: what it checked, how many SKUs drifted and how many it repaired."""

    __tablename__ = "reconcile_runs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    started_ms: Mapped[int] = mapped_column(BigInteger)
    finished_ms: Mapped[int] = mapped_column(BigInteger)
    full: Mapped[bool] = mapped_column(Boolean)
    repair: Mapped[bool] = mapped_column(Boolean)
    skus_checked: Mapped[int] = mapped_column(Integer)
    skus_drifted: Mapped[int] = mapped_column(Integer)
    skus_repaired: Mapped[int] = mapped_column(Integer)
    orders_recovered: Mapped[int] = mapped_column(Integer, default=0)

    drifts: Mapped[list["ReconcileDriftRow"]] = relationship(back_populates="run", order_by="ReconcileDriftRow.sku")


class ReconcileDriftRow(Base):
    """Per-SKU difference found by a run: Redis counters against what Postgres (plus the outbox) says."""

    __tablename__ = "reconcile_drifts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("reconcile_runs.id", ondelete="CASCADE"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    redis_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    redis_available: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    redis_held: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    redis_sold: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expected_total: Mapped[int] = mapped_column(BigInteger)
    expected_available: Mapped[int] = mapped_column(BigInteger)
    expected_held: Mapped[int] = mapped_column(BigInteger)
    expected_sold: Mapped[int] = mapped_column(BigInteger)
    repaired: Mapped[bool] = mapped_column(Boolean)
    units_repaired: Mapped[int] = mapped_column(BigInteger, default=0)
    detail: Mapped[str] = mapped_column(Text, default="")

    run: Mapped[ReconcileRunRow] = relationship(back_populates="drifts")


class SyncStateRow(Base):
    """Which Redis incarnation (epoch) Postgres follows and the last outbox id persisted from it."""

    __tablename__ = "sync_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[str] = mapped_column(String(64))
    last_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class SaleSwitchRow(Base):
    """The global sale switch as last set (one row, id 1); its outbox entry id orders the changes."""

    __tablename__ = "sale_switch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    entry_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    entry_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class OutboxRejectRow(Base):
    """An outbox entry that could not be parsed: kept for a human instead of being dropped."""

    __tablename__ = "outbox_rejects"

    entry_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    fields: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    received_ms: Mapped[int] = mapped_column(BigInteger)
