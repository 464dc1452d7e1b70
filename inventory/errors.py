"""Domain errors: each carries a stable machine-readable `code` and details."""

from __future__ import annotations

from typing import Any


class InventoryError(Exception):
    """Base of every error the core raises on purpose."""

    code = "inventory_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidArgument(InventoryError):
    code = "invalid_argument"


class ProductNotFound(InventoryError):
    code = "product_not_found"


class SaleNotActive(InventoryError):
    code = "sale_not_active"


class SoldOut(InventoryError):
    code = "sold_out"


class LimitExceeded(InventoryError):
    code = "limit_exceeded"


class ReservationNotFound(InventoryError):
    code = "reservation_not_found"


class OrderNotFound(InventoryError):
    code = "order_not_found"


class ReservationExpired(InventoryError):
    code = "reservation_expired"


class ReservationClosed(InventoryError):
    code = "reservation_closed"


class IdempotencyConflict(InventoryError):
    code = "idempotency_key_reused"


class VersionConflict(InventoryError):
    code = "version_conflict"


class StockBelowCommitted(InventoryError):
    code = "stock_below_committed"


class BucketsChanged(InventoryError):
    """The SKU was split into stock buckets after this call read its layout; routed again, it goes through."""

    code = "buckets_changed"


class ProductRecovering(InventoryError):
    """The SKU's counters are being rebuilt; only the rebuild may reopen (or pause) it."""

    code = "product_recovering"


class ExtensionLimit(InventoryError):
    """An extension would pass the configured lifetime cap (or the number of extensions is used up)."""

    code = "extension_limit"


class WaitlistEntryNotFound(InventoryError):
    code = "waitlist_entry_not_found"


class NotSoldOut(InventoryError):
    """Joining a waitlist for a quantity that can be reserved now."""

    code = "not_sold_out"


class AlreadyWaiting(InventoryError):
    code = "already_waiting"


class WaitlistFull(InventoryError):
    code = "waitlist_full"


class StaleRead(InventoryError):
    """Lines changed between reading a reservation and acting on it; retried internally."""

    code = "stale_read"


class Unavailable(InventoryError):
    code = "unavailable"


class RateLimited(InventoryError):
    """A rate-limit bucket passed to reserve is over its limit; `retry_after_ms` says when it reopens."""

    code = "rate_limited"


def _detail(reply: list[Any], index: int) -> Any:
    value = reply[index] if len(reply) > index else None
    return value.decode() if isinstance(value, bytes) else value


# Script return code -> (exception, message, detail names for reply[1:]).
SCRIPT_ERRORS: dict[int, tuple[type[InventoryError], str, tuple[str, ...]]] = {
    -1: (ProductNotFound, "No such product.", ("sku",)),
    -2: (SaleNotActive, "The sale for this product is not active.", ("sku", "reason")),
    -3: (SoldOut, "Not enough stock available.",
         ("sku", "available", "requested", "waitlist_length", "true_for_ms", "due_bucket")),
    -4: (LimitExceeded, "Per-user limit for this product reached.", ("sku", "limit", "already")),
    -5: (ReservationNotFound, "No such reservation.", ()),
    -6: (ReservationExpired, "The reservation has expired.", ()),
    -7: (ReservationClosed, "The reservation is no longer open.", ("status",)),
    -8: (IdempotencyConflict, "This id was already used with a different request.", ()),
    -9: (VersionConflict, "The product changed since the expected version.", ("expected", "actual")),
    -10: (
        StockBelowCommitted,
        "Total stock cannot drop below units held and sold.",
        ("committed", "requested"),
    ),
    -11: (InvalidArgument, "Invalid argument (a quantity above the maximum, a malformed id, ...).",
          ("argument",)),
    -12: (StaleRead, "The reservation changed while being read.", ()),
    -13: (RateLimited, "Too many requests; slow down.", ("bucket", "retry_after_ms")),
    -14: (ProductRecovering, "The product is being rebuilt after a Redis data loss; try again shortly.",
          ("sku",)),
    -16: (WaitlistEntryNotFound, "No such waitlist entry (or offer).", ()),
    -17: (NotSoldOut, "Not sold out: reserve instead of joining the waitlist.", ("sku", "available")),
    -18: (AlreadyWaiting, "Already waiting for another quantity; leave the waitlist first.", ("sku", "qty")),
    -19: (WaitlistFull, "The waitlist is full.", ("sku", "length")),
    -20: (BucketsChanged, "The product's stock layout changed; retry.", ("sku", "buckets")),
    -15: (ExtensionLimit, "This would extend past the maximum lifetime.", ("max_until_ms", "extensions")),
}


def raise_for_reply(reply: list[Any]) -> None:
    """Raise the mapped domain error when a script reply carries a negative code."""
    code = int(reply[0])
    if code >= 0:
        return
    error, message, names = SCRIPT_ERRORS[code]
    details = {name: _detail(reply, i + 1) for i, name in enumerate(names)}
    raise error(message, **details)
