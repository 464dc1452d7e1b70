"""Request and response schemas (marshmallow): they validate input and document the OpenAPI spec."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from inventory.buckets import MAX_BUCKETS
from inventory.models import SaleState, Status
from inventory.validation import MAX_LINES, MAX_QTY, SKU_PATTERN, USER_PATTERN

MAX_MONEY = 10**12
MAX_SECONDS = 86_400  # the longest ttl_seconds or extension a request may ask for


class Whole(validate.Regexp):
    """validate.Regexp over the whole value: with re.match, `$` would let a trailing newline through."""

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


_sku = Whole(SKU_PATTERN, error="SKU must be 1-64 characters of letters, digits, '.', '_' or '-'.")
_user = Whole(USER_PATTERN, error="user_id must be 1-128 characters of letters, digits and ._@:+=-")


def _strict_bool(**kwargs: Any) -> fields.Boolean:
    return fields.Boolean(truthy={True}, falsy={False}, **kwargs)


class Strict(ma.Schema):
    """Unknown fields are refused (marshmallow's default RAISE), stated for clarity."""

    class Meta:
        unknown = ma.RAISE


def _user_id(**kwargs: Any) -> fields.String:
    return fields.String(validate=_user, metadata={
        "description": "The acting user; required with a storefront API key, optional with a user JWT "
                       "(must then equal the token's subject)."}, **kwargs)


# -- requests ---------------------------------------------------------------------------------

class ItemIn(Strict):
    sku = fields.String(required=True, validate=_sku)
    qty = fields.Integer(required=True, strict=True, validate=validate.Range(1, MAX_QTY))


class ItemChange(Strict):
    sku = fields.String(required=True, validate=_sku)
    qty = fields.Integer(required=True, strict=True, validate=validate.Range(0, MAX_QTY),
                         metadata={"description": "New quantity of the line; 0 removes it."})


def _unique_skus(items: list[dict[str, Any]]) -> None:
    skus = [item["sku"] for item in items]
    if len(set(skus)) != len(skus):
        raise ma.ValidationError("Each SKU may appear once.")


class ReserveIn(Strict):
    user_id = _user_id()
    items = fields.List(fields.Nested(ItemIn), required=True,
                        validate=[validate.Length(1, MAX_LINES), _unique_skus])
    ttl_seconds = fields.Integer(strict=True, validate=validate.Range(1, MAX_SECONDS),
                                 metadata={"description": "Hold time; at most the configured maximum."})


class AmendIn(Strict):
    user_id = _user_id()
    items = fields.List(fields.Nested(ItemChange), required=True,
                        validate=[validate.Length(1, MAX_LINES), _unique_skus])


class UserIn(Strict):
    user_id = _user_id()


class WaitlistJoinIn(Strict):
    user_id = _user_id()
    qty = fields.Integer(required=True, strict=True, validate=validate.Range(1, MAX_QTY),
                         metadata={"description": "Units wanted; with a per-user limit, at most what it leaves."})


class WaitlistClaimIn(Strict):
    user_id = _user_id()
    ttl_seconds = fields.Integer(strict=True, validate=validate.Range(1, MAX_SECONDS),
                                 metadata={"description": "Hold time of the reservation the offer becomes."})


class ExtendIn(Strict):
    user_id = _user_id()
    seconds = fields.Integer(required=True, strict=True, validate=validate.Range(1, MAX_SECONDS),
                             metadata={"description": "The hold (or, once checked out, the payment deadline) "
                                                      "then ends this many seconds from now; never earlier "
                                                      "than before, never past the configured lifetime cap."})


class OrdersQuery(Strict):
    user_id = _user_id()
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 100))


class ProductsQuery(Strict):
    after = fields.String(load_default="", validate=Whole(r"^$|" + SKU_PATTERN.pattern),
                          metadata={"description": "Return products after this SKU (pagination)."})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 200))


class LimitQuery(Strict):
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class PaymentEventIn(Strict):
    event_id = fields.String(required=True, validate=validate.Length(1, 255))
    order_id = fields.String(validate=validate.Length(1, 64))
    reservation_id = fields.String(validate=validate.Length(1, 64))
    status = fields.String(required=True, validate=validate.OneOf(["paid", "failed", "requires_action"]),
                           metadata={"description": "requires_action (e.g. a 3-D Secure challenge) extends the "
                                                    "hold or the payment deadline, up to the lifetime cap."})

    @ma.validates_schema
    def _one_target(self, data: dict[str, Any], **_: Any) -> None:
        if ("order_id" in data) == ("reservation_id" in data):
            raise ma.ValidationError("Give exactly one of order_id and reservation_id.", "order_id")


class ProductIn(Strict):
    name = fields.String(validate=validate.Length(1, 200))
    price = fields.Integer(strict=True, validate=validate.Range(0, MAX_MONEY),
                           metadata={"description": "Unit price in minor units (cents)."})
    currency = fields.String(validate=Whole(r"^[A-Z]{3}$", error="ISO 4217 code, e.g. USD."))
    stock = fields.Integer(strict=True, validate=validate.Range(0, MAX_MONEY),
                           metadata={"description": "New total stock (held and sold units stay)."})
    per_user_limit = fields.Integer(strict=True, validate=validate.Range(0, 1_000_000),
                                    metadata={"description": "Units per user, held plus ordered; 0 = none."})
    sale_starts_at = fields.AwareDateTime(allow_none=True, metadata={"description": "null = open."})
    sale_ends_at = fields.AwareDateTime(allow_none=True, metadata={"description": "null = open."})
    paused = _strict_bool()
    buckets = fields.Integer(strict=True, validate=validate.Range(1, MAX_BUCKETS),
                             metadata={"description": "Stock buckets over the Redis partitions (a hot SKU's "
                                                      "reserves spread over shards); live changes allowed."})
    expected_version = fields.Integer(strict=True, validate=validate.Range(0, MAX_MONEY))

    @ma.validates_schema
    def _window(self, data: dict[str, Any], **_: Any) -> None:
        starts, ends = data.get("sale_starts_at"), data.get("sale_ends_at")
        if starts and ends and ends <= starts:
            raise ma.ValidationError("sale_ends_at must be after sale_starts_at.", "sale_ends_at")


class StockIn(Strict):
    set = fields.Integer(strict=True, validate=validate.Range(0, MAX_MONEY),
                         metadata={"description": "New total."})
    add = fields.Integer(strict=True, validate=validate.Range(-MAX_MONEY, MAX_MONEY),
                         metadata={"description": "Units to add (negative removes)."})
    expected_version = fields.Integer(strict=True, validate=validate.Range(0, MAX_MONEY))

    @ma.validates_schema
    def _one_mode(self, data: dict[str, Any], **_: Any) -> None:
        if ("set" in data) == ("add" in data):
            raise ma.ValidationError("Give exactly one of 'set' and 'add'.", "set")


class SaleSwitchIn(Strict):
    paused = _strict_bool(required=True, metadata={"description": "true pauses every sale, SKUs created later too."})


class ReconcileIn(Strict):
    repair = _strict_bool(load_default=False)
    full = _strict_bool(load_default=False)


# -- responses --------------------------------------------------------------------------------

class ErrorBody(ma.Schema):
    code = fields.String(required=True, metadata={"description": "Stable machine-readable code."})
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorOut(ma.Schema):
    error = fields.Nested(ErrorBody, required=True)


class LineOut(ma.Schema):
    sku = fields.String(required=True)
    qty = fields.Integer(required=True)
    unit_price = fields.Integer(required=True)
    amount = fields.Integer(required=True)


class ReservationOut(ma.Schema):
    id = fields.String(required=True)
    user_id = fields.String(required=True)
    status = fields.Enum(Status, by_value=True, required=True)
    items = fields.List(fields.Nested(LineOut), required=True, attribute="lines")
    total = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)
    order_id = fields.String(allow_none=True, required=True)
    extensions = fields.Integer(required=True)


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def reservation_json(reservation: Any) -> dict[str, Any]:
    """What ReservationOut dumps, built directly for the hot path (a test keeps the two equal)."""
    return {
        "id": reservation.id,
        "user_id": reservation.user_id,
        "status": reservation.status.value,
        "items": [{"sku": line.sku, "qty": line.qty, "unit_price": line.unit_price, "amount": line.amount}
                  for line in reservation.lines],
        "total": reservation.total,
        "created_at": _iso(reservation.created_at),
        "expires_at": _iso(reservation.expires_at),
        "order_id": reservation.order_id,
        "extensions": reservation.extensions,
    }


class OrderOut(ma.Schema):
    id = fields.String(required=True)
    order_id = fields.Function(lambda order: order.id, required=True, metadata={"type": "string"})
    reservation_id = fields.String(required=True)
    user_id = fields.String(required=True)
    status = fields.Enum(Status, by_value=True, required=True)
    items = fields.List(fields.Nested(LineOut), required=True, attribute="lines")
    total = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    payment_due_at = fields.DateTime(allow_none=True, required=True,
                                     metadata={"description": "Unpaid past this, the order becomes "
                                                              "payment_expired and its units go back."})
    extensions = fields.Integer(required=True)


class WaitlistEntryOut(ma.Schema):
    sku = fields.String(required=True)
    user_id = fields.String(required=True)
    status = fields.String(required=True, metadata={
        "description": "waiting | offered (claim it before `until`) | claimed | lapsed | expired"})
    units = fields.Integer(required=True, metadata={"description": "Wanted (waiting) or offered units."})
    position = fields.Integer(required=True, metadata={"description": "1 = next in line; 0 once offered."})
    length = fields.Integer(required=True, metadata={"description": "Buyers waiting on this SKU."})
    until = fields.DateTime(required=True, metadata={
        "description": "waiting: when the entry expires; offered: the claim deadline; claimed: the hold's expiry"})
    reservation_id = fields.String(allow_none=True, required=True)


class WaitlistLeftOut(ma.Schema):
    sku = fields.String(required=True)
    user_id = fields.String(required=True)
    left = fields.String(required=True, metadata={"description": "The entry's state when it left."})


class WaitlistSummaryOut(ma.Schema):
    sku = fields.String(required=True)
    waiting = fields.Integer(required=True)
    units_wanted = fields.Integer(required=True)
    units_set_aside = fields.Integer(required=True)
    head = fields.List(fields.Nested(WaitlistEntryOut), required=True)


class ExtensionOut(ma.Schema):
    reservation_id = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": "'hold' or 'payment' (the deadline moved)."})
    until = fields.DateTime(required=True)
    extensions = fields.Integer(required=True)


class ProductOut(ma.Schema):
    sku = fields.String(required=True)
    name = fields.String(required=True)
    price = fields.Integer(required=True)
    currency = fields.String(required=True)
    available = fields.Integer(required=True)
    sale_status = fields.Enum(SaleState, by_value=True, required=True, attribute="sale_state")
    per_user_limit = fields.Integer(required=True)
    sale_starts_at = fields.DateTime(allow_none=True, required=True)
    sale_ends_at = fields.DateTime(allow_none=True, required=True)


class StockOut(ma.Schema):
    sku = fields.String(required=True)
    total = fields.Integer(required=True)
    available = fields.Integer(required=True)
    held = fields.Integer(required=True)
    sold = fields.Integer(required=True)
    version = fields.Integer(required=True)


class AdminProductOut(ProductOut):
    paused = fields.Boolean(required=True)
    version = fields.Integer(required=True)
    buckets = fields.Integer(required=True, metadata={"description": "Stock buckets new holds go to."})
    stock = fields.Nested(StockOut, required=True)


class HoldOut(ma.Schema):
    reservation_id = fields.String(required=True)
    user_id = fields.String(required=True)
    qty = fields.Integer(required=True)
    expires_at = fields.DateTime(required=True)


class PaymentOut(ma.Schema):
    event_id = fields.String(required=True)
    reservation_id = fields.String(required=True)
    order_id = fields.String(allow_none=True, required=True)
    status = fields.Enum(Status, by_value=True, required=True)
    extended_until = fields.DateTime(allow_none=True, required=True,
                                     metadata={"description": "requires_action: the new hold expiry or payment "
                                                              "deadline (null for paid / failed)."})


class PageMeta(ma.Schema):
    next_after = fields.String(allow_none=True, required=True,
                               metadata={"description": "Pass as `after` for the next page; null at the end."})


class HealthOut(ma.Schema):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String())


def data_of(inner: type[ma.Schema] | ma.Schema, *, many: bool = False, meta: type[ma.Schema] | None = None,
            name: str | None = None) -> type[ma.Schema]:
    """A `{"data": ...}` envelope schema around `inner`."""
    attrs: dict[str, Any] = {"data": fields.Nested(inner, many=many, required=True)}
    if meta is not None:
        attrs["meta"] = fields.Nested(meta, required=True)
    inner_name = inner.__name__ if isinstance(inner, type) else type(inner).__name__
    schema_name = name or f"{inner_name.removesuffix('Out')}{'List' if many else ''}Data"
    return type(schema_name, (ma.Schema,), attrs)


ReservationData = data_of(ReservationOut)
OrderData = data_of(OrderOut)
OrderListData = data_of(OrderOut, many=True)
ProductData = data_of(ProductOut)
ProductListData = data_of(ProductOut, many=True, meta=PageMeta)
AdminProductData = data_of(AdminProductOut)
StockData = data_of(StockOut)
HoldListData = data_of(HoldOut, many=True)
PaymentData = data_of(PaymentOut)
ExtensionData = data_of(ExtensionOut)
WaitlistEntryData = data_of(WaitlistEntryOut)
WaitlistLeftData = data_of(WaitlistLeftOut)
WaitlistSummaryData = data_of(WaitlistSummaryOut)
class SaleSwitchOut(ma.Schema):
    paused = fields.Boolean(required=True, metadata={"description": "Whether the global switch pauses every sale."})


SaleSwitchData = data_of(SaleSwitchOut)
ReconcileData = type("ReconcileData", (ma.Schema,), {
    "data": fields.Dict(required=True, metadata={"description": "The reconciliation report."})})
