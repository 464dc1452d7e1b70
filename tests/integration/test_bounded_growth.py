"""Issue 10, item 6: Redis holds the open work, not the sale's history (real redis-server + PostgreSQL).

Hundreds of buyers each run a whole lifecycle (paid, failed, released, expired, paid straight from
the hold); once persistence, the sweep and reconciliation ran and the short retentions passed, the
key count and memory under the deployment's prefix are back to what they were with only the open
work (the products and the holds still open), whatever the number of buyers was.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import redis

from inventory import Inventory, Settings
from inventory.buyers import read_buyers
from inventory.persistence import drain_once
from inventory.reconcile import run_reconciliation
from tests.clocks import ManualClock
from tests.helpers import assert_invariant, make_product, stock

BUYERS = 500


def kind_of(name: str) -> str:
    """A key's kind: the part after the hash tag, with the tag's partition."""
    kind = name.rsplit("}", 1)[-1] or name.rsplit(":", 1)[-1]
    return kind if "{" not in name else f"{{{name.split('{', 1)[1].split(':', 1)[0]}}}{kind}"


def footprint(client: redis.Redis, prefix: str) -> tuple[dict[str, int], int]:
    """Keys under the prefix by kind (the part after the hash tag), and their total MEMORY USAGE."""
    kinds: dict[str, int] = {}
    memory = 0
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        kind = kind_of(key.decode())
        kinds[kind] = kinds.get(kind, 0) + 1
        memory += client.memory_usage(key, samples=0) or 0
    return kinds, memory


def run_lifecycle(inv: Inventory, n: int, sku: str) -> None:
    user = f"buyer-{n:05d}"
    kind = n % 5
    held = inv.reservations.reserve(user, {sku: 1}, ttl_seconds=1)
    if kind == 0:
        order = inv.reservations.checkout(held.id)
        inv.reservations.record_payment(event_id=f"paid-{n}", result="paid", order_id=order.id)
    elif kind == 1:
        order = inv.reservations.checkout(held.id)
        inv.reservations.record_payment(event_id=f"failed-{n}", result="failed", order_id=order.id)
    elif kind == 2:
        inv.reservations.release(held.id)
    elif kind == 3:
        inv.reservations.record_payment(event_id=f"direct-{n}", result="paid", reservation_id=held.id)
    # kind 4: abandoned; the sweep expires it


def settle(inv: Inventory, sessions: Any, clock: ManualClock) -> None:
    """What the workers do: expire due holds, persist the outbox, reconcile the changed SKUs."""
    clock.advance(2)
    inv.reservations.expire_due()
    while drain_once(inv, sessions, claim_idle_ms=0).backlog:
        pass
    run_reconciliation(inv, sessions, repair=True)


def test_many_full_lifecycles_leave_redis_at_the_size_of_the_open_work(
        real_redis: redis.Redis, settings: Settings, pg_sessions: Any) -> None:
    short = replace(settings, record_retention_seconds=2, order_retention_seconds=2)
    clock = ManualClock()
    inv = Inventory(real_redis, short, clock)
    make_product(inv, "FREE", stock=BUYERS)
    make_product(inv, "LIMITED", stock=BUYERS, limit=2)
    open_holds = [inv.reservations.reserve(f"keeper-{i}", {"FREE": 1, "LIMITED": 1}, ttl_seconds=3600)
                  for i in range(3)]
    settle(inv, pg_sessions, clock)
    before_kinds, before_memory = footprint(real_redis, short.key_prefix)

    # Workers sweep every few seconds; here after every 50 buyers, well within a record's real-time TTL
    # (ttl + retention), so no record expires before the sweep that releases its hold.
    for n in range(BUYERS + 50):
        run_lifecycle(inv, n, "FREE" if n < BUYERS else "LIMITED")
        if n % 50 == 49:
            clock.advance(2)
            inv.reservations.expire_due()
    settle(inv, pg_sessions, clock)
    time.sleep(max(short.record_retention_seconds, short.order_retention_seconds) + 1.5)  # real-time TTLs
    clock.advance(short.record_retention_seconds)  # packed records: their retention on the scripts' clock,
    assert inv.records.prune(inv.records.every) == (BUYERS + 50) // 5  # the abandoned holds: one round of the sweeper's pruning (a minute)
    after_kinds, after_memory = footprint(real_redis, short.key_prefix)

    paid_limited = {f"buyer-{BUYERS + n:05d}" for n in range(50) if n % 5 in (0, 3)}
    buyers_limited = set(read_buyers(real_redis, inv.keys.sku("LIMITED")))
    # The limited SKU must remember who bought (to enforce its limit); nothing else remembers anyone.
    assert buyers_limited == paid_limited | {f"keeper-{i}" for i in range(3)}
    assert set(read_buyers(real_redis, inv.keys.sku("FREE"))) == {f"keeper-{i}" for i in range(3)}
    # Three buyers are counted in the stock hash (light); past 16 the limited SKU's get a buyers hash.
    assert after_kinds == {**before_kinds, kind_of(inv.keys.sku("LIMITED").buyers): 1}, (before_kinds, after_kinds)
    limited_buyers_memory = 16 * len(paid_limited) + 64 + 128  # their hash fields and key, generously
    print(f"keys before/after: {sum(before_kinds.values())}/{sum(after_kinds.values())}; "
          f"memory before/after: {before_memory}/{after_memory} B after {BUYERS + 50} lifecycles")
    assert after_memory <= before_memory + limited_buyers_memory + 2048  # stream/listpack rounding
    for held in open_holds:
        assert inv.reservations.get(held.id).status.value == "held"
    for sku in ("FREE", "LIMITED"):
        assert_invariant(stock(inv, sku))
    assert stock(inv, "FREE").held == 3 and stock(inv, "LIMITED").held == 3
