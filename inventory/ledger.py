"""What the system of record says about stock: ledger sums plus outbox entries not yet persisted.

The stock ledger is append-only, and the database enforces it (migration 0002): an UPDATE or DELETE of a
`stock_ledger` row, or a TRUNCATE on PostgreSQL, fails with APPEND_ONLY_MESSAGE (SQLSTATE
APPEND_ONLY_SQLSTATE on PostgreSQL, a constraint error on SQLite; IntegrityError in SQLAlchemy on both)
and leaves the rows as they were. A correction is therefore always a new, compensating row with its own
`ref`: an admin stock change appends 'adj:<stream id>:<sku>' with a signed total_delta, a failed payment
appends 'returned:<order>:<sku>' with -qty in sold_delta against the order's 'sold:' row, and
reconciliation repairs Redis from these sums (or re-emits missing orders to the outbox) without
touching existing rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inventory.buckets import Layout, is_quota, product_of
from inventory.outbox import Event, Movement, OrderEvent, movements
from inventory.tables import SOLD_STATUSES, STATUS_RANK, LedgerRow, OrderLineRow, OrderRow, ProductRow

# What the append-only triggers answer (the values in migration 0002, kept equal by a test).
APPEND_ONLY_MESSAGE = "stock_ledger is append-only"
APPEND_ONLY_SQLSTATE = "23001"  # restrict_violation


@dataclass(frozen=True)
class Counts:
    """Stock counters of one SKU (available + held + sold == total)."""

    total: int
    available: int
    held: int
    sold: int

    @classmethod
    def of(cls, fields: dict[str, str]) -> "Counts | None":
        """Counters from a stock hash; None when the SKU is missing in Redis."""
        if not fields:
            return None
        return cls(*(int(fields.get(k) or 0) for k in ("total", "avail", "held", "sold")))


@dataclass(frozen=True)
class Persisted:
    """One SKU's totals from the ledger."""

    total: int = 0
    sold: int = 0
    version: int = 0
    rows: int = 0


def persisted(session: Session, skus: Sequence[str]) -> dict[str, Persisted]:
    """SUM(total_delta), SUM(sold_delta), MAX(version) per SKU from the append-only ledger."""
    out: dict[str, Persisted] = {}
    for start in range(0, len(skus), 500):
        rows = session.execute(
            select(LedgerRow.sku, func.sum(LedgerRow.total_delta), func.sum(LedgerRow.sold_delta),
                   func.max(LedgerRow.version), func.count())
            .where(LedgerRow.sku.in_(skus[start:start + 500]))
            .group_by(LedgerRow.sku)
        )
        for sku, total, sold, version, count in rows:
            out[sku] = Persisted(int(total or 0), int(sold or 0), int(version or 0), int(count))
    return out


def known_refs(session: Session, refs: Iterable[str]) -> set[str]:
    """The ledger refs among `refs` already persisted."""
    refs = sorted(set(refs))
    found: set[str] = set()
    for start in range(0, len(refs), 500):
        found.update(session.scalars(select(LedgerRow.ref).where(LedgerRow.ref.in_(refs[start:start + 500]))))
    return found


def unpersisted(session: Session, events: Sequence[Event]) -> list[Movement]:
    """Movements of outbox events whose ledger rows do not exist yet (each ref once)."""
    moves = {m.ref: m for e in events for m in movements(e)}
    known = known_refs(session, moves)
    return [m for ref, m in moves.items() if ref not in known]


class LedgerBusy(Exception):
    """The drain kept committing these movements while they were read: no consistent view this time."""


def settled(session: Session, skus: Sequence[str], events: Sequence[Event],
            attempts: int = 5) -> tuple[dict[str, Persisted], list[Movement]]:
    """Ledger sums and the outbox movements not in them, read so that both agree.

    A drain may commit some of `events` between our queries; reading the persisted refs before and
    after the sums and retrying until they match gives a view in which each movement counts once,
    whatever the isolation level (SQLite included). If they never match, LedgerBusy: a view that
    counts a batch twice (or not at all) must never reach a repair.
    """
    moves = {m.ref: m for e in events for m in movements(e) if m.sku in set(skus)}
    for _ in range(attempts):
        before = known_refs(session, moves)
        base = persisted(session, skus)
        if known_refs(session, moves) == before:
            return base, [m for ref, m in moves.items() if ref not in before]
        session.rollback()  # a fresh snapshot for databases that hold one per transaction
    raise LedgerBusy(f"persistence kept committing movements of {len(skus)} SKU(s) while they were read")


def expected_counts(base: Persisted | None, pending: Iterable[Movement], held: int) -> Counts:
    """What Redis should hold: ledger plus pending movements for total and sold; holds as Redis has them."""
    base = base or Persisted()
    pending = list(pending)
    total = base.total + sum(m.total_delta for m in pending)
    sold = base.sold + sum(m.sold_delta for m in pending)
    return Counts(total, total - sold - held, held, sold)


def products(session: Session, skus: Sequence[str] | None = None) -> dict[str, ProductRow]:
    """Product rows by SKU (all of them when skus is None)."""
    query = select(ProductRow)
    if skus is not None:
        query = query.where(ProductRow.sku.in_(list(skus)))
    return {row.sku: row for row in session.scalars(query)}


def all_skus(session: Session) -> list[str]:
    """Every SKU Postgres knows: configured products and SKUs with ledger rows."""
    skus = set(session.scalars(select(ProductRow.sku)))
    skus.update(session.scalars(select(LedgerRow.sku).distinct()))
    return sorted(skus)


def has_data(session: Session) -> bool:
    """True once anything was persisted (a fresh database has no products and no ledger)."""
    return session.scalar(select(func.count()).select_from(ProductRow)) > 0 or \
        session.scalar(select(func.count()).select_from(LedgerRow)) > 0


def buyer_units(session: Session, sku: str, pending: Sequence[Event] = (), partitions: int = 1) -> dict[str, int]:
    """Units of a SKU each user has ordered and not had returned (per-user limits count them).

    A quota SKU of a split product (inventory/buckets.py) counts, for each user it serves, their units
    of the product over every bucket, the product's orders from before the split included: order_lines
    keep no quota lines (they hold no stock), so its figures come from the bucket lines.
    """
    quota = is_quota(sku)
    product = product_of(sku)

    def counted(line_sku: str) -> bool:
        return (product_of(line_sku) == product and not is_quota(line_sku)) if quota else line_sku == sku

    where = OrderLineRow.sku == sku
    if quota:
        stem = product.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where = (OrderLineRow.sku == product) | OrderLineRow.sku.like(f"{stem}@%", escape="\\")
    who: dict[str, tuple[str, str]] = {}  # order id -> (user, status)
    lines: dict[str, dict[str, int]] = {}  # order id -> counted line SKU -> qty
    rows = session.execute(
        select(OrderRow.id, OrderRow.user_id, OrderRow.status, OrderLineRow.sku, OrderLineRow.qty)
        .join(OrderLineRow, OrderLineRow.order_id == OrderRow.id)
        .where(where)
    )
    for order_id, user, status, line_sku, qty in rows:
        if counted(line_sku):
            who[order_id] = (user, status)
            lines.setdefault(order_id, {})[line_sku] = int(qty)
    for event in pending:  # outbox events not persisted yet move statuses forward, as persistence will
        if not isinstance(event, OrderEvent):
            continue
        mine = {line.sku: line.qty for line in event.lines if counted(line.sku)}
        if not mine:
            continue
        user, status = who.get(event.order_id, (event.user_id, event.status))
        if STATUS_RANK[event.status] > STATUS_RANK[status]:
            status = event.status
        who[event.order_id] = (user, status)
        lines.setdefault(event.order_id, {}).update(mine)  # each part's event carries its own lines
    units: dict[str, int] = {}
    serves = Layout(product, 0, 0, partitions).quota_for  # which quota counts a user's units
    for order_id, (user, status) in who.items():
        if status in SOLD_STATUSES and (not quota or serves(user) == sku):
            units[user] = units.get(user, 0) + sum(lines[order_id].values())
    return units
