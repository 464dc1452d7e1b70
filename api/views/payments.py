"""Payment provider webhook: signed results applied once per event id."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import Response, request
from flask_smorest import Blueprint

from api import metrics, observability
from api.errors import ApiError
from api.schemas import PaymentData, PaymentEventIn
from api.state import respond, state
from api.parsing import arguments
from api.views.docs import responses
from api.webhooks import HEADER_DOCS
from inventory.errors import IdempotencyConflict, OrderNotFound, ReservationNotFound, Unavailable
from inventory.recovery import redis_lost_data

blp = Blueprint("payments", __name__, url_prefix="/v1/payments", description="Payment provider callbacks.")
_payment = PaymentData()


@blp.before_request
def _verify_signature() -> None:
    """The raw body is verified before anything parses it."""
    st = state()
    st.webhooks.verify(request.get_data(cache=True), request.headers, st.inventory.ctx.now_ms())


@blp.route("/webhook", methods=["POST"], parameters=HEADER_DOCS)
@responses(blp, 200, PaymentData, 401, 404, 409, 422, security=[])
@arguments(blp, PaymentEventIn())
def payment_webhook(args: dict[str, Any]) -> Response:
    """Apply 'paid' / 'failed' for an order or reservation. The same event again gets the original
    response; the same event id with a different body is 409 event_id_reused."""
    st = state()
    print_ = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()
    record_key = st.inventory.keys.scoped(
        f"whk:{hashlib.sha256(args['event_id'].encode()).hexdigest()[:40]}")

    def produce() -> Response:
        try:
            outcome = st.inventory.reservations.record_payment(
                event_id=args["event_id"], result=args["status"],
                reservation_id=args.get("reservation_id"), order_id=args.get("order_id"),
                request_id=observability.current_request_id())
        except IdempotencyConflict:  # the record's own ev:<id> field saw this event with another result
            raise _event_id_reused(args["event_id"]) from None
        except (OrderNotFound, ReservationNotFound):
            if redis_lost_data(st.inventory):
                raise Unavailable("The inventory store is being rebuilt; retry shortly.",
                                  reason="recovering") from None
            raise
        metrics.PAYMENTS.labels(outcome.status.value).inc()
        return respond(_payment, outcome)

    return st.idempotency.run(record_key, print_, produce, final=_applied,
                              reused=lambda: _event_id_reused(args["event_id"]))


def _applied(response: Response) -> bool:
    """Only an applied (or replayed) payment is stored under its event id."""
    # Everything else is answered afresh on the provider's retry, which it makes for any non-2xx: a
    # missing record (503 while Redis is being rebuilt, else 404), 503, 5xx, stale read, conflicts.
    # A stored 404 would be replayed to the retry after recovery and leave the order pending for good.
    return response.status_code == 200


def _event_id_reused(event_id: str) -> ApiError:
    return ApiError("event_id_reused", "This event id was already received with a different body.",
                    event_id=event_id)
