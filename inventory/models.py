"""Results the core hands out: plain frozen dataclasses, never raw Redis replies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum


def from_ms(ms: int | None) -> datetime | None:
    """UTC datetime from milliseconds since the epoch; None or 0 stays None."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms else None


class Status(str, Enum):
    """Lifecycle of a reservation and of the order it becomes."""

    HELD = "held"
    RELEASED = "released"
    EXPIRED = "expired"
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_EXPIRED = "payment_expired"
    REFUND_REQUIRED = "refund_required"


class SaleState(str, Enum):
    """Whether a product can be reserved right now."""

    ACTIVE = "active"
    PAUSED = "paused"
    PAUSED_GLOBALLY = "paused_globally"
    RECOVERING = "recovering"
    NOT_STARTED = "not_started"
    ENDED = "ended"


@dataclass(frozen=True)
class Line:
    """One SKU of a reservation or order; price in minor units per unit."""

    sku: str
    qty: int
    unit_price: int = 0

    @property
    def amount(self) -> int:
        return self.qty * self.unit_price


@dataclass(frozen=True)
class StockLevel:
    """Live counters of one SKU: available + held + sold == total."""

    sku: str
    total: int
    available: int
    held: int
    sold: int
    version: int


@dataclass(frozen=True)
class Product:
    """Catalogue data, sale settings and live stock of one SKU."""

    sku: str
    name: str
    price: int
    currency: str
    per_user_limit: int
    sale_starts_at: datetime | None
    sale_ends_at: datetime | None
    paused: bool
    sale_state: SaleState
    stock: StockLevel
    buckets: int = 1  # stock buckets new holds go to (inventory/buckets.py); 1 = not split or one bucket

    @property
    def available(self) -> int:
        return self.stock.available

    @property
    def version(self) -> int:
        return self.stock.version


@dataclass(frozen=True)
class Reservation:
    """A hold of stock for one user; once checked out it carries its order id."""

    id: str
    user_id: str
    status: Status
    lines: tuple[Line, ...]
    created_at: datetime
    expires_at: datetime
    order_id: str | None = None
    replayed: bool = False
    extensions: int = 0  # how many times the hold (or, after checkout, the payment deadline) was extended

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass(frozen=True)
class Order:
    """A checked-out reservation and its payment state."""

    id: str
    reservation_id: str
    user_id: str
    status: Status
    lines: tuple[Line, ...]
    created_at: datetime
    replayed: bool = False
    payment_due_at: datetime | None = None  # pending_payment past this becomes payment_expired
    extensions: int = 0

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass(frozen=True)
class WaitlistEntry:
    """A buyer's place on a sold-out SKU's waitlist, or the offer it became.

    status: 'waiting' (position 1 is next), 'offered' (a hold of `units` for this buyer until
    `until`; claim it to get `reservation_id`), 'claimed' (the reservation exists), 'lapsed' (the offer
    passed on unclaimed), 'expired' (nothing was offered before `until`).
    """

    sku: str
    user_id: str
    status: str
    units: int
    position: int
    length: int
    until: datetime
    reservation_id: str | None = None
    replayed: bool = False


@dataclass(frozen=True)
class WaitlistSummary:
    """A SKU's waitlist as admins see it."""

    sku: str
    waiting: int
    units_wanted: int
    units_set_aside: int
    head: tuple[WaitlistEntry, ...]


@dataclass(frozen=True)
class Extension:
    """What an extension did: which deadline ('hold' | 'payment') now ends when."""

    reservation_id: str
    kind: str
    until: datetime
    extensions: int
    replayed: bool


@dataclass(frozen=True)
class PaymentOutcome:
    """What a payment event did: the status after it and whether it was a replay."""

    event_id: str
    reservation_id: str
    order_id: str | None
    status: Status
    replayed: bool
    extended_until: datetime | None = None  # 'requires_action': the hold's expiry or payment deadline now


@dataclass(frozen=True)
class Hold:
    """One open hold on a SKU, as listed for admins."""

    reservation_id: str
    user_id: str
    qty: int
    expires_at: datetime


@dataclass(frozen=True)
class RateLimit:
    """A fixed-window request counter checked (and counted) atomically with a reservation."""

    key: str  # the counter's full Redis key
    limit: int  # requests allowed per window
    window_seconds: int
    label: str = ""  # how the limit is described to the caller, e.g. "10 per 1 second"


@dataclass(frozen=True)
class SweepResult:
    """What one expiry sweep did."""

    expired: int
    units_returned: int
    batches: int = 1
    offered: int = 0  # units offered to waiting buyers (waitlists)
    units_moved: int = 0  # units moved between the stock buckets of split SKUs (inventory/buckets.py)
    records_pruned: int = 0  # packed records dropped after their retention (inventory/records.py)
