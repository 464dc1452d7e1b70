"""Payment provider webhook: signed results applied once per event id."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import Response, request
from flask_smorest import Blueprint

from api import metrics
from api.errors import ApiError, handle_inventory_error
from api.schemas import PaymentData, PaymentEventIn
from api.state import respond, state
from api.parsing import arguments
from api.views.docs import responses
from api.webhooks import HEADER_DOCS
from inventory.errors import InventoryError

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
    stored = st.idempotency.redis.get(record_key)
    if stored is not None:
        record = json.loads(stored)
        if record["fp"] != print_:
            raise ApiError("event_id_reused", "This event id was already received with a different body.",
                           event_id=args["event_id"])
        return Response(record["body"], status=record["status"], mimetype="application/json")
    try:
        outcome = st.inventory.reservations.record_payment(
            event_id=args["event_id"], result=args["status"],
            reservation_id=args.get("reservation_id"), order_id=args.get("order_id"))
        metrics.PAYMENTS.labels(outcome.status.value).inc()
        response = respond(_payment, outcome)
    except InventoryError as error:
        response = handle_inventory_error(error)
    if response.status_code < 500:
        st.idempotency.save(record_key, print_, response)
    return response
