"""Waitlists of sold-out SKUs: join, read (an offer shows here), leave, claim the offer."""

from __future__ import annotations

from typing import Any, Callable

from flask import Response
from flask_smorest import Blueprint

from api import metrics, ratelimit
from api.auth import STOREFRONT_SECURITY, acting_user, require
from api.parsing import arguments
from api.schemas import (
    ReservationData, UserIn, WaitlistClaimIn, WaitlistEntryData, WaitlistJoinIn, WaitlistLeftData,
)
from api.state import respond, state
from api.views.docs import responses
from inventory.errors import InventoryError

blp = Blueprint("waitlist", __name__, url_prefix="/v1/products",
                description="Waitlists of sold-out products: returned units are offered in join order.")
_entry, _left, _reservation = WaitlistEntryData(), WaitlistLeftData(), ReservationData()


@blp.before_request
def _authenticate() -> None:
    require(state().auth, "storefront", "user")


def _counted(action: str, call: Callable[[], Any]) -> Any:
    try:
        result = call()
    except InventoryError as error:
        metrics.WAITLIST.labels(action, error.code).inc()
        raise
    metrics.WAITLIST.labels(action, "ok").inc()
    return result


@blp.route("/<string:sku>/waitlist", methods=["POST"])
@responses(blp, 201, WaitlistEntryData, 401, 403, 404, 409, 422, 429, security=STOREFRONT_SECURITY,
           description="Joined (201), or the entry this buyer already has (200). An offer may come at once.")
@arguments(blp, WaitlistJoinIn())
@ratelimit.per_user
@ratelimit.per_ip
def join_waitlist(args: dict[str, Any], sku: str) -> Response:
    """Queue for a sold-out product (one entry per user and product); 409 not_sold_out if it can be
    reserved now, 409 waitlist_full, 409 limit_exceeded past the per-user limit."""
    user_id = acting_user(args.get("user_id"))
    entry = _counted("join", lambda: state().inventory.waitlists.join(sku, user_id, args["qty"]))
    return respond(_entry, entry, 200 if entry.replayed else 201)


@blp.route("/<string:sku>/waitlist", methods=["GET"])
@responses(blp, 200, WaitlistEntryData, 401, 403, 404, 422, 429, security=STOREFRONT_SECURITY)
@arguments(blp, UserIn(), location="query")
@ratelimit.per_user
@ratelimit.per_ip
def get_waitlist_entry(args: dict[str, Any], sku: str) -> Response:
    """This buyer's entry: position while waiting; 'offered' with its claim deadline once units are back."""
    user_id = acting_user(args.get("user_id"))
    return respond(_entry, state().inventory.waitlists.get(sku, user_id))


@blp.route("/<string:sku>/waitlist", methods=["DELETE"])
@responses(blp, 200, WaitlistLeftData, 401, 403, 404, 422, 429, security=STOREFRONT_SECURITY)
@arguments(blp, UserIn(), location="query")
@ratelimit.per_user
@ratelimit.per_ip
def leave_waitlist(args: dict[str, Any], sku: str) -> Response:
    """Leave the waitlist; an open offer's units pass to the next buyer at once."""
    user_id = acting_user(args.get("user_id"))
    left = _counted("leave", lambda: state().inventory.waitlists.leave(sku, user_id))
    return respond(_left, {"sku": sku, "user_id": user_id, "left": left})


@blp.route("/<string:sku>/waitlist/claim", methods=["POST"])
@responses(blp, 201, ReservationData, 401, 403, 404, 409, 422, 429, security=STOREFRONT_SECURITY,
           description="The offer is now an open reservation: check it out and pay as usual.")
@arguments(blp, WaitlistClaimIn())
@ratelimit.per_user
@ratelimit.per_ip
def claim_offer(args: dict[str, Any], sku: str) -> Response:
    """Claim this buyer's offer before its deadline (409 reservation_expired after it); claiming again
    answers the same reservation."""
    user_id = acting_user(args.get("user_id"))
    held = _counted("claim", lambda: state().inventory.waitlists.claim(
        sku, user_id, ttl_seconds=args.get("ttl_seconds")))
    return respond(_reservation, held, 201)
