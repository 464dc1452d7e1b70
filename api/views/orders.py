"""Storefront orders: status whether or not it has reached the database yet (read from Redis)."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint

from api.auth import STOREFRONT_SECURITY, acting_user, require
from api.schemas import OrderData, OrderListData, OrdersQuery, UserIn
from api.parsing import arguments
from api.state import respond, state
from api.views.docs import responses

blp = Blueprint("orders", __name__, url_prefix="/v1/orders", description="A user's orders.")
_one, _many = OrderData(), OrderListData()


@blp.before_request
def _authenticate() -> None:
    require(state().auth, "storefront", "user")


@blp.route("", methods=["GET"])
@responses(blp, 200, OrderListData, 401, 403, 422, security=STOREFRONT_SECURITY)
@arguments(blp, OrdersQuery(), location="query")
def list_orders(args: dict[str, Any]) -> Response:
    """A user's most recent orders, newest first."""
    user_id = acting_user(args.get("user_id"))
    return respond(_many, state().inventory.reservations.list_orders(user_id, limit=args["limit"]))


@blp.route("/<string:order_id>", methods=["GET"])
@responses(blp, 200, OrderData, 401, 403, 404, 422, security=STOREFRONT_SECURITY)
@arguments(blp, UserIn(), location="query")
def get_order(args: dict[str, Any], order_id: str) -> Response:
    """One order and its payment status (pending_payment, paid, payment_failed, payment_expired, refund_required)."""
    user_id = acting_user(args.get("user_id"))
    return respond(_one, state().inventory.reservations.get_order(order_id, user_id=user_id))
