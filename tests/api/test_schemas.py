"""The hot path's hand-built JSON stays identical to what the documented schema dumps."""

from __future__ import annotations

from datetime import datetime, timezone

from api.schemas import ReservationOut, reservation_json
from inventory.models import Line, Reservation, Status


def test_reservation_json_matches_the_documented_schema():
    moment = datetime(2027, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    for order_id in (None, "o_abc0123456789"):
        reservation = Reservation(id="r_abc0123456789", user_id="alice", status=Status.PENDING_PAYMENT,
                                  lines=(Line("HOT", 2, 1500), Line("MUG", 1, 700)), created_at=moment,
                                  expires_at=moment, order_id=order_id)
        assert reservation_json(reservation) == ReservationOut().dump(reservation)
