"""Storefront reservations: hold, read, amend, release, check out."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Callable

import structlog
from flask import Response, jsonify, request
from flask_smorest import Blueprint

from api import idempotency, metrics, observability, ratelimit
from api.auth import STOREFRONT_SECURITY, acting_user, require
from api.hotpath import hold
from api.parsing import arguments
from api.schemas import (
    AmendIn, ExtendIn, ExtensionData, OrderData, ReservationData, ReserveIn, UserIn, reservation_json,
)
from api.state import respond, state
from api.views.docs import responses
from inventory.errors import InventoryError
from inventory.models import Order

blp = Blueprint("reservations", __name__, url_prefix="/v1/reservations",
                description="Stock holds for a user, and their checkout into orders.")
_reservation, _order, _extension = ReservationData(), OrderData(), ExtensionData()
log = structlog.get_logger("flashstock.api")


@blp.before_request
def _authenticate() -> None:
    require(state().auth, "storefront", "user")


def _keyed(user_id: str, args: dict[str, Any], produce: Callable[[], Response]) -> Response:
    """Run `produce` under the request's Idempotency-Key (scoped to the acting user), if it has one."""
    key = idempotency.header_key()
    if key is None:
        return produce()
    st = state()
    # user_id is in the scope and the fingerprint already; leaving it out of the body makes a
    # storefront request with user_id and the same user's JWT request without it the same request.
    body = {name: value for name, value in args.items() if name != "user_id"}
    print_ = idempotency.fingerprint(f"{request.method} {request.url_rule.rule}",  # type: ignore[union-attr]
                                     user_id, [request.view_args, body])
    return st.idempotency.run(st.idempotency.record_key(f"user:{user_id}", key), print_, produce)


@blp.route("", methods=["POST"], parameters=[idempotency.HEADER_DOC])
@responses(blp, 201, ReservationData, 401, 403, 404, 409, 422, 429, security=STOREFRONT_SECURITY)
@arguments(blp, ReserveIn())
def create_reservation(args: dict[str, Any]) -> Response:
    """Hold stock on one or more SKUs for a user, all lines or none."""
    # Without an Idempotency-Key this request is normally answered by api/hotpath.py, before Flask.
    st = state()
    user_id = acting_user(args.get("user_id"))
    key = idempotency.header_key()

    def produce() -> Response:
        held = hold(st, user_id, args, request.remote_addr or "127.0.0.1", key)
        response = jsonify({"data": reservation_json(held)})
        response.status_code = 201
        return response

    return _keyed(user_id, args, produce)


@blp.route("/<string:reservation_id>", methods=["GET"])
@responses(blp, 200, ReservationData, 401, 403, 404, 422, 429, security=STOREFRONT_SECURITY)
@arguments(blp, UserIn(), location="query")
@ratelimit.per_user
@ratelimit.per_ip
def get_reservation(args: dict[str, Any], reservation_id: str) -> Response:
    """A reservation as it stands now (held, expired, released, or checked out)."""
    user_id = acting_user(args.get("user_id"))
    return respond(_reservation, state().inventory.reservations.get(reservation_id, user_id=user_id))


@blp.route("/<string:reservation_id>", methods=["PATCH"])
@responses(blp, 200, ReservationData, 401, 403, 404, 409, 422, 429, security=STOREFRONT_SECURITY)
@arguments(blp, AmendIn())
@ratelimit.per_user
@ratelimit.per_ip
def amend_reservation(args: dict[str, Any], reservation_id: str) -> Response:
    """Add, change or remove lines (qty 0 removes) of an open reservation, atomically."""
    user_id = acting_user(args.get("user_id"))
    changes = [(item["sku"], item["qty"]) for item in args["items"]]
    amended = state().inventory.reservations.amend(reservation_id, changes, user_id=user_id)
    return respond(_reservation, amended)


@blp.route("/<string:reservation_id>", methods=["DELETE"])
@responses(blp, 200, ReservationData, 401, 403, 404, 422, 429, security=STOREFRONT_SECURITY)
@arguments(blp, UserIn(), location="query")
@ratelimit.per_user
@ratelimit.per_ip
def release_reservation(args: dict[str, Any], reservation_id: str) -> Response:
    """Release a hold: its stock returns at once; releasing again is harmless."""
    user_id = acting_user(args.get("user_id"))
    released = state().inventory.reservations.release(reservation_id, user_id=user_id)
    return respond(_reservation, released)


@blp.route("/<string:reservation_id>/checkout", methods=["POST"], parameters=[idempotency.HEADER_DOC])
@responses(blp, 202, OrderData, 401, 403, 404, 409, 422, 429, security=STOREFRONT_SECURITY,
           description="Order created, awaiting payment; it is persisted to the database asynchronously.")
@arguments(blp, UserIn(), required=False)
@ratelimit.per_user
@ratelimit.per_ip
def checkout(args: dict[str, Any] | None, reservation_id: str) -> Response:
    """Turn an open hold into an order awaiting payment; repeating returns the same order."""
    args = args or {}
    st = state()
    user_id = acting_user(args.get("user_id"))

    def produce() -> Response:
        try:
            order = st.inventory.reservations.checkout(reservation_id, user_id=user_id,
                                                       request_id=observability.current_request_id())
        except InventoryError as error:
            metrics.CHECKOUTS.labels(error.code).inc()
            raise
        metrics.CHECKOUTS.labels("replayed" if order.replayed else "created").inc()
        if not order.replayed:
            _notify_checkout(order)
        return respond(_order, order, 202)

    return _keyed(user_id, args, produce)


@blp.route("/<string:reservation_id>/extend", methods=["POST"], parameters=[idempotency.HEADER_DOC])
@responses(blp, 200, ExtensionData, 401, 403, 404, 409, 422, 429, security=STOREFRONT_SECURITY)
@arguments(blp, ExtendIn())
@ratelimit.per_user
@ratelimit.per_ip
def extend_reservation(args: dict[str, Any], reservation_id: str) -> Response:
    """Extend an open hold, or after checkout the order's payment deadline, to `seconds` from now.

    409 extension_limit past the configured lifetime cap; 409 reservation_expired / reservation_closed
    when there is nothing open to extend. The same Idempotency-Key again is the same extension.
    """
    st = state()
    user_id = acting_user(args.get("user_id"))
    key = idempotency.header_key()
    # Scoped to the acting user like the stored response; hashed to fit the script's 255 characters.
    extension_id = f"key:{hashlib.sha256(f'{user_id} {key}'.encode()).hexdigest()[:40]}" if key \
        else f"call:{uuid.uuid4().hex}"

    def produce() -> Response:
        extension = st.inventory.reservations.extend(reservation_id, seconds=args["seconds"],
                                                     extension_id=extension_id, user_id=user_id)
        return respond(_extension, extension)

    return _keyed(user_id, args, produce)


def _notify_checkout(order: Order) -> None:
    """Nudge the sync layer to persist the order promptly; it is durable in Redis already."""
    hook = state().on_checkout
    if hook is None:
        return
    try:
        hook(order)
    except Exception:  # persistence catches up from the outbox anyway
        log.warning("checkout_notify_failed", order_id=order.id, exc_info=True)
