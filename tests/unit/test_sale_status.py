"""Reservations per minute: the reserve script's window counters and the estimate read from them."""

from __future__ import annotations

from inventory import Inventory
from tests.clocks import ManualClock
from inventory.sale_status import read_status, reservations_per_minute
from tests.helpers import make_product

MINUTE = 60_000


def test_estimate_weights_the_previous_minute_by_the_part_still_in_the_window() -> None:
    fields = {"rm": "100", "rc": "4", "rp": "10"}
    assert reservations_per_minute(fields, 100 * MINUTE) == 14
    assert reservations_per_minute(fields, 100 * MINUTE + MINUTE // 2) == 9
    assert reservations_per_minute(fields, 101 * MINUTE + MINUTE // 4) == 3  # rc becomes the previous minute
    assert reservations_per_minute(fields, 102 * MINUTE) == 0
    assert reservations_per_minute({}, 5 * MINUTE) == 0


def test_reserve_counts_reservations_per_sku_and_minute(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "HOT", stock=100)
    make_product(inv, "COLD", stock=100)
    clock.advance(60 - (clock.now_ms() % MINUTE) / 1000)  # start of a minute
    for n in range(3):
        inv.reservations.reserve(f"u{n}", {"HOT": 1, "COLD": 1})
    inv.reservations.reserve("solo", {"HOT": 2})
    assert [s.reservations_per_minute for s in read_status(inv, ["HOT", "COLD"])] == [4, 3]
    clock.advance(60)
    inv.reservations.reserve("next", {"HOT": 1})
    assert read_status(inv, ["HOT"])[0].reservations_per_minute == 5  # 4 from the minute before + 1
    clock.advance(150)
    assert read_status(inv, ["HOT"])[0].reservations_per_minute == 0
    inv.reservations.reserve("later", {"HOT": 1})
    assert read_status(inv, ["HOT"])[0].reservations_per_minute == 1
