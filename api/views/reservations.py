"""Storefront reservations: hold, read, amend, release, check out."""

from __future__ import annotations

from typing import Any, Callable

import structlog
from flask import Response, g, request
from flask_smorest import Blueprint

from api import idempotency, metrics, ratelimit
from api.auth import STOREFRONT_SECURITY, acting_user, require
from api.schemas import AmendIn, OrderData, ReservationData, ReserveIn, UserIn
from api.state import respond, state
from api.views.docs import errors
from inventory.errors import InventoryError
from inventory.models import Order

blp = Blueprint("reservations", __name__, url_prefix="/v1/reservations",
                description="Stock holds for a user, and their checkout into orders.")
_reservation, _order = ReservationData(), OrderData()
log = structlog.get_logger("flashstock.api")


@blp.before_request
def _authenticate() -> None:
    require(state().auth, "storefront", "user")


def _idempotent(user_id: str, args: Any, produce: Callable[[], Response]) -> Response:
    """Run `produce` once per Idempotency-Key; the same request again gets the stored response."""
    key = idempotency.header_key()
    if key is None:
        return produce()
    store = state().idempotency
    principal = g.principal
    scope = f"user:{principal.user_id}" if principal.kind == "user" else "storefront"
    record_key = store.record_key(scope, key)
    print_ = idempotency.fingerprint(f"{request.method} {request.url_rule.rule}",  # type: ignore[union-attr]
                                     user_id, [request.view_args, args])
    return store.run(record_key, print_, store.redis.get(record_key), produce)


@blp.route("", methods=["POST"], parameters=[idempotency.HEADER_DOC])
@blp.arguments(ReserveIn)
@blp.response(201, ReservationData)
@blp.doc(security=STOREFRONT_SECURITY)
@errors(blp, 401, 403, 404, 409, 422, 429)
@ratelimit.per_user
@ratelimit.per_ip
def create_reservation(args: dict[str, Any]) -> Response:
    """Hold stock on one or more SKUs for a user, all lines or none."""
    user_id = acting_user(args.get("user_id"))
    items = [(item["sku"], item["qty"]) for item in args["items"]]
    key = request.headers.get(idempotency.HEADER)

    def produce() -> Response:
        try:
            held = state().inventory.reservations.reserve(
                user_id, items, ttl_seconds=args.get("ttl_seconds"), idempotency_key=key)
        except InventoryError as error:
            metrics.RESERVATIONS.labels(error.code).inc()
            raise
        metrics.RESERVATIONS.labels("held").inc()
        return respond(_reservation, held, 201)

    return _idempotent(user_id, args, produce)


@blp.route("/<string:reservation_id>", methods=["GET"])
@blp.arguments(UserIn, location="query")
@blp.response(200, ReservationData)
@blp.doc(security=STOREFRONT_SECURITY)
@errors(blp, 401, 403, 404, 422, 429)
@ratelimit.per_user
@ratelimit.per_ip
def get_reservation(args: dict[str, Any], reservation_id: str) -> Response:
    """A reservation as it stands now (held, expired, released, or checked out)."""
    user_id = acting_user(args.get("user_id"))
    return respond(_reservation, state().inventory.reservations.get(reservation_id, user_id=user_id))


@blp.route("/<string:reservation_id>", methods=["PATCH"])
@blp.arguments(AmendIn)
@blp.response(200, ReservationData)
@blp.doc(security=STOREFRONT_SECURITY)
@errors(blp, 401, 403, 404, 409, 422, 429)
@ratelimit.per_user
@ratelimit.per_ip
def amend_reservation(args: dict[str, Any], reservation_id: str) -> Response:
    """Add, change or remove lines (qty 0 removes) of an open reservation, atomically."""
    user_id = acting_user(args.get("user_id"))
    changes = [(item["sku"], item["qty"]) for item in args["items"]]
    amended = state().inventory.reservations.amend(reservation_id, changes, user_id=user_id)
    return respond(_reservation, amended)


@blp.route("/<string:reservation_id>", methods=["DELETE"])
@blp.arguments(UserIn, location="query")
@blp.response(200, ReservationData)
@blp.doc(security=STOREFRONT_SECURITY)
@errors(blp, 401, 403, 404, 422, 429)
@ratelimit.per_user
@ratelimit.per_ip
def release_reservation(args: dict[str, Any], reservation_id: str) -> Response:
    """Release a hold: its stock returns at once; releasing again is harmless."""
    user_id = acting_user(args.get("user_id"))
    released = state().inventory.reservations.release(reservation_id, user_id=user_id)
    return respond(_reservation, released)


@blp.route("/<string:reservation_id>/checkout", methods=["POST"], parameters=[idempotency.HEADER_DOC])
@blp.arguments(UserIn, required=False)
@blp.response(202, OrderData, description="Order created, awaiting payment; persisted asynchronously.")
@blp.doc(security=STOREFRONT_SECURITY)
@errors(blp, 401, 403, 404, 409, 422, 429)
@ratelimit.per_user
@ratelimit.per_ip
def checkout(args: dict[str, Any] | None, reservation_id: str) -> Response:
    """Turn an open hold into an order awaiting payment; repeating returns the same order."""
    args = args or {}
    user_id = acting_user(args.get("user_id"))

    def produce() -> Response:
        try:
            order = state().inventory.reservations.checkout(reservation_id, user_id=user_id)
        except InventoryError as error:
            metrics.CHECKOUTS.labels(error.code).inc()
            raise
        metrics.CHECKOUTS.labels("replayed" if order.replayed else "created").inc()
        if not order.replayed:
            _notify_checkout(order)
        return respond(_order, order, 202)

    return _idempotent(user_id, args, produce)


def _notify_checkout(order: Order) -> None:
    """Nudge the sync layer to persist the order promptly; it is durable in Redis already."""
    hook = state().on_checkout
    if hook is None:
        return
    try:
        hook(order)
    except Exception:  # persistence catches up from the outbox anyway
        log.warning("checkout_notify_failed", order_id=order.id, exc_info=True)
