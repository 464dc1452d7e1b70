"""Many SKUs sharing expiry-index buckets, reserved, released and swept from many threads while time
passes, on a real redis-server and a Redis Cluster: every open hold stays listed no later than its
expiry, and once all are due one sweep gives every unit back and leaves no index entry."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from inventory import Inventory
from inventory.errors import InventoryError
from inventory.keys import HOLDS_IN, HOLDS_OF
from tests.clocks import ManualClock
from tests.helpers import assert_holds_listed, assert_invariant, make_product, stock

SKUS = 300  # over 256 buckets: buckets are shared, and several SKUs share each partition's buckets
UNITS = 3
ROUNDS = 6
PER_ROUND = 400


def test_holds_on_skus_sharing_buckets_stay_listed_and_all_come_back(real_inv: Inventory,
                                                                     clock: ManualClock) -> None:
    skus = [f"IB{n:04d}" for n in range(SKUS)]
    for sku in skus:
        make_product(real_inv, sku, stock=UNITS)
    shared = Counter((real_inv.keys.of_sku(sku).index, real_inv.keys.sku(sku).index) for sku in skus)
    assert max(shared.values()) >= 2  # the race below really has SKUs sharing buckets
    rng = random.Random(1205)
    held: list[str] = []
    lock = threading.Lock()

    def act(step: tuple[int, int]) -> str:
        kind, n = step
        try:
            if kind == 0:  # a sweep, racing the writers
                real_inv.reservations.expire_due(batch_size=7)
            elif kind == 1 and held:
                with lock:
                    victim = held.pop(n % len(held))
                real_inv.reservations.release(victim)
            else:
                reservation = real_inv.reservations.reserve(f"u{n}", {skus[n % SKUS]: 1 + n % 2},
                                                            ttl_seconds=1 + n % 3)
                with lock:
                    held.append(reservation.id)
            return "ok"
        except InventoryError as error:  # sold out, or released after it expired: expected under the race
            return error.code

    codes: Counter[str] = Counter()
    for round_ in range(ROUNDS):
        steps = [(rng.choice((0, 1, 2, 2, 2)), round_ * PER_ROUND + n) for n in range(PER_ROUND)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            codes.update(pool.map(act, steps))
        assert_holds_listed(real_inv, skus)  # after every round: no open hold the sweeper would miss
        clock.advance(rng.choice((0.001, 0.999, 1, 1.5)))

    assert codes["ok"] > ROUNDS * PER_ROUND // 2, codes
    assert set(codes) <= {"ok", "sold_out", "reservation_expired", "reservation_closed"}, codes
    clock.advance(4)  # every hold is due: one sweep gives all of them back
    real_inv.reservations.expire_due()
    for sku in skus:
        level = stock(real_inv, sku)
        assert_invariant(level)
        assert (level.held, level.available) == (0, UNITS), sku
    for part in real_inv.keys.parts:
        listed = [m.decode() for m in real_inv.redis.zrange(part.expiries, 0, -1)]
        assert not [m for m in listed if m.startswith((HOLDS_IN, HOLDS_OF))], listed
        assert not any(real_inv.redis.exists(bucket) for bucket in part.all_index_buckets())
