"""Typed events parsed from the Redis outbox stream (written by the Lua scripts in the same call)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Union

from inventory.context import text
from inventory.models import Line

ORDER_KINDS = ("order_created", "order_paid", "order_payment_failed", "order_payment_expired",
               "order_refund_required")
# Order events that give an order's sold units back to the sale.
RETURNING_KINDS = ("order_payment_failed", "order_payment_expired")
# Order status each order event leaves behind.
STATUS_AFTER = {
    "order_created": "pending_payment",
    "order_paid": "paid",
    "order_payment_failed": "payment_failed",
    "order_payment_expired": "payment_expired",
    "order_refund_required": "refund_required",
}


@dataclass(frozen=True, order=True)
class StreamId:
    """A stream entry id 'ms-seq', comparable numerically."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, value: Any) -> "StreamId":
        ms, _, seq = text(value).partition("-")
        return cls(int(ms), int(seq or 0))

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


ZERO_ID = StreamId(0, 0)


@dataclass(frozen=True)
class OrderEvent:
    """An order changed: created (held -> sold), paid, payment failed (sold -> available), refund required."""

    entry_id: str
    kind: str
    order_id: str
    token: str
    user_id: str
    lines: tuple[Line, ...]
    event_id: str
    ts_ms: int
    request_id: str = ""  # X-Request-ID of the call that wrote the entry ('' = none)

    @property
    def status(self) -> str:
        return STATUS_AFTER[self.kind]

    @property
    def reservation_id(self) -> str:
        return f"r_{self.token}"

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass(frozen=True)
class StockAdjusted:
    """Admin or seed change of a SKU's total."""

    entry_id: str
    sku: str
    delta: int
    total: int
    version: int
    reason: str
    ts_ms: int


@dataclass(frozen=True)
class ProductConfigured:
    """Catalogue data and sale settings of a SKU after a change; paused is '0' | '1' | 'r' (recovering)."""

    entry_id: str
    sku: str
    name: str
    price: int
    currency: str
    per_user_limit: int
    starts_at_ms: int
    ends_at_ms: int
    paused: str
    version: int
    ts_ms: int
    buckets: int | None = None  # active stock buckets (0: not split); None: an entry from before 'bk' was sent


@dataclass(frozen=True)
class SaleSwitched:
    """The global sale switch was set (paused) or cleared."""

    entry_id: str
    paused: bool
    ts_ms: int


@dataclass(frozen=True)
class Malformed:
    """An entry that does not parse; persisted as a reject so nothing disappears silently."""

    entry_id: str
    fields: dict[str, str]
    error: str


Event = Union[OrderEvent, StockAdjusted, ProductConfigured, SaleSwitched, Malformed]


def parse_lines(encoded: str) -> tuple[Line, ...]:
    """'sku:qty:price,sku:qty:price' as Lines (SKUs never contain ':' or ','); '' for an order event of a
    multi-part order's home that kept no line of its own (its other parts' events carry them)."""
    if encoded == "":
        return ()
    lines = []
    for part in encoded.split(","):
        sku, qty, price = part.split(":")
        if not sku or int(qty) < 1 or int(price) < 0:
            raise ValueError(f"bad line {part!r}")
        lines.append(Line(sku, int(qty), int(price)))
    return tuple(lines)


def parse_entry(entry_id: Any, raw: dict[Any, Any]) -> Event:
    """One stream entry as a typed event; anything unexpected becomes Malformed."""
    eid = text(entry_id)
    fields = {text(k): text(v) for k, v in raw.items()}
    try:
        return _parse(eid, fields)
    except (KeyError, ValueError) as error:
        return Malformed(eid, fields, f"{type(error).__name__}: {error}")


def _parse(eid: str, f: dict[str, str]) -> Event:
    kind = f["type"]
    if kind in ORDER_KINDS:
        if not f["order"].startswith("o_") or not f["res"] or not f["user"]:
            raise ValueError("order, res and user are required")
        return OrderEvent(eid, kind, f["order"], f["res"], f["user"], parse_lines(f["lines"]),
                          f.get("event", ""), int(f["ts"]), f.get("rid", ""))
    if kind == "stock_adjusted":
        return StockAdjusted(eid, _sku(f), int(f["delta"]), int(f["total"]), int(f["ver"]),
                             f["reason"] or "admin", int(f["ts"]))
    if kind == "product_configured":
        if f["paused"] not in ("0", "1", "r"):
            raise ValueError(f"paused {f['paused']!r}")
        return ProductConfigured(eid, _sku(f), f["name"], int(f["price"]), f["cur"], int(f["limit"] or 0),
                                 int(f["start"] or 0), int(f["end"] or 0), f["paused"], int(f["ver"]),
                                 int(f["ts"]), None if "bk" not in f else int(f["bk"] or 0))
    if kind == "sale_switch":
        if f["paused"] not in ("0", "1"):
            raise ValueError(f"paused {f['paused']!r}")
        return SaleSwitched(eid, f["paused"] == "1", int(f["ts"]))
    raise ValueError(f"unknown event type {kind!r}")


def _sku(fields: dict[str, str]) -> str:
    if not fields["sku"]:
        raise ValueError("sku is required")
    return fields["sku"]


def parse_entries(entries: Iterable[tuple[Any, dict[Any, Any]]]) -> list[Event]:
    """A stream reply's (id, fields) pairs as events, in stream order."""
    return [parse_entry(eid, raw) for eid, raw in entries]


@dataclass(frozen=True)
class Movement:
    """What an event does to one SKU's persisted counters, keyed by a unique ledger ref."""

    ref: str
    sku: str
    kind: str
    total_delta: int
    sold_delta: int
    order_id: str | None
    version: int
    ts_ms: int


def movements(event: Event) -> list[Movement]:
    """Ledger movements implied by an event (the same on every redelivery, so refs dedupe them)."""
    if isinstance(event, StockAdjusted):
        return [Movement(f"adj:{event.entry_id}:{event.sku}", event.sku, event.reason, event.delta, 0, None,
                         event.version, event.ts_ms)]
    if isinstance(event, OrderEvent) and event.kind in ("order_created", *RETURNING_KINDS):
        kind, sign = ("sold", 1) if event.kind == "order_created" else ("returned", -1)
        return [Movement(f"{kind}:{event.order_id}:{line.sku}", line.sku, kind, 0, sign * line.qty,
                         event.order_id, 0, event.ts_ms) for line in event.lines]
    return []


def order_event_fields(kind: str, order_id: str, token: str, user_id: str, lines: Iterable[Line],
                       event_id: str, ts_ms: int, request_id: str = "") -> dict[str, str]:
    """Stream fields of an order event, exactly as the Lua scripts write them (for re-emission)."""
    encoded = ",".join(f"{line.sku}:{line.qty}:{line.unit_price}" for line in lines)
    return {"type": kind, "order": order_id, "res": token, "user": user_id, "lines": encoded,
            "event": event_id, "ts": str(ts_ms), "rid": request_id}
