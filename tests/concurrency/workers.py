"""Process entry points for the concurrency tests (importable by spawned interpreters)."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from inventory import Inventory, Settings
from inventory.errors import InventoryError
from inventory.store import connect_redis


def _settings(redis_url: str, prefix: str = "fs", partitions: int = 0) -> Settings:
    """One Redis or a cluster (redis+cluster://...), with the pool and patience of a busy test process."""
    return Settings(key_prefix=prefix, redis_url=redis_url, redis_max_connections=128, redis_timeout_seconds=30,
                    redis_partitions=partitions)


def wall_clock_inventory(redis_url: str, prefix: str, partitions: int = 0) -> Inventory:
    """An Inventory on Redis's own clock (TIME), as the worker processes here use."""
    return Inventory.from_settings(_settings(redis_url, prefix, partitions))


def reserve_many(redis_url: str, prefix: str, attempts: list[tuple[str, dict[str, int]]],
                 threads: int, partitions: int = 0) -> list[tuple[str, str, dict[str, int]]]:
    """Run reservations from many threads; return (outcome code or 'ok', reservation id, lines) each."""
    inv = wall_clock_inventory(redis_url, prefix, partitions)

    def attempt(item: tuple[str, dict[str, int]]) -> tuple[str, str, dict[str, int]]:
        user, lines = item
        try:
            return "ok", inv.reservations.reserve(user, lines).id, lines
        except InventoryError as error:
            return error.code, "", lines

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(attempt, attempts))


def random_baskets(seed: int, count: int, skus: list[str]) -> list[tuple[str, dict[str, int]]]:
    """Multi-line baskets of 1-3 SKUs, 1-3 units each, distinct users."""
    rng = random.Random(seed)
    baskets = []
    for n in range(count):
        chosen = rng.sample(skus, rng.randint(1, min(3, len(skus))))
        baskets.append((f"buyer-{seed}-{n}", {sku: rng.randint(1, 3) for sku in chosen}))
    return baskets


def sample_min_available(redis_url: str, stock_keys: list[str], stop: Any) -> int:
    """Poll the available counters until told to stop; return the lowest value seen."""
    client = connect_redis(_settings(redis_url))
    lowest = None
    while not stop.is_set():
        values = [int(client.hget(key, "avail") or 0) for key in stock_keys]
        lowest = min(values + ([lowest] if lowest is not None else []))
    return lowest if lowest is not None else 0


def trade(redis_url: str, prefix: str, skus: list[str], seed: int, rounds: int) -> dict[str, int]:
    """Reserve random baskets (some with a 1 s hold that expires), then check out, release or abandon each."""
    inv = wall_clock_inventory(redis_url, prefix)
    rng = random.Random(seed)
    done = {"reserved": 0, "checked_out": 0, "released": 0, "abandoned": 0, "refused": 0}
    for n in range(rounds):
        chosen = rng.sample(skus, rng.randint(1, min(2, len(skus))))
        try:
            held = inv.reservations.reserve(f"trader-{seed}-{n}", {s: rng.randint(1, 2) for s in chosen},
                                            ttl_seconds=rng.choice([1, 60]))
            done["reserved"] += 1
            action = rng.random()
            if action < 0.5:
                inv.reservations.checkout(held.id)
                done["checked_out"] += 1
            elif action < 0.8:
                inv.reservations.release(held.id)
                done["released"] += 1
            else:
                done["abandoned"] += 1  # left to expire (1 s) or stay open (60 s)
        except InventoryError:
            done["refused"] += 1
    return done


def sweep_for(redis_url: str, prefix: str, seconds: float, partitions: int = 0, claim_window: int = 0) -> int:
    """Run the expiry sweep (holds and payment deadlines; with `claim_window`, the sweeper's whole pass,
    offers and rebalancing included) in a loop for `seconds`; return units returned."""
    settings = _settings(redis_url, prefix, partitions)
    if claim_window:
        settings = settings.with_overrides(waitlist_claim_seconds=claim_window)
    inv = Inventory.from_settings(settings)
    returned, until = 0, time.monotonic() + seconds
    while time.monotonic() < until:
        returned += (inv.sweep() if claim_window else inv.reservations.expire_due()).units_returned
        time.sleep(0.005)
    return returned


def pay_at(redis_url: str, prefix: str, plan: list[tuple[float, str, str, str]]) -> list[tuple[str, str]]:
    """Send payment results at planned wall-clock times (epoch seconds, order id, event id, result);
    return (order, status or error code) each."""
    inv = wall_clock_inventory(redis_url, prefix)
    out = []
    for at, order_id, event_id, result in sorted(plan):
        time.sleep(max(0.0, at - time.time()))
        try:
            outcome = inv.reservations.record_payment(event_id=event_id, result=result, order_id=order_id)
            out.append((order_id, outcome.status.value))
        except InventoryError as error:
            out.append((order_id, error.code))
    return out


def wait_in_line(redis_url: str, prefix: str, sku: str, users: list[str], seed: int,
                 claim_window: int, partitions: int = 0) -> list[tuple[str, str, str]]:
    """Join, then leave (a quarter), claim (half of the rest) or let the offer lapse; return
    (user, outcome, reservation id or '') each."""
    inv = Inventory.from_settings(_settings(redis_url, prefix, partitions).with_overrides(
        waitlist_claim_seconds=claim_window))
    rng = random.Random(seed)
    plans = {user: rng.choice(["leave", "claim", "claim", "lapse"]) for user in users}
    out: list[tuple[str, str, str]] = []
    waiting = []
    for user in users:
        try:
            inv.waitlists.join(sku, user, 1)
            waiting.append(user)
        except InventoryError as error:
            out.append((user, f"join:{error.code}", ""))
    deadline = time.monotonic() + 20
    while waiting and time.monotonic() < deadline:
        for user in list(waiting):
            try:
                if plans[user] == "leave" and rng.random() < 0.3:
                    out.append((user, "left:" + inv.waitlists.leave(sku, user), ""))
                    waiting.remove(user)
                    continue
                entry = inv.waitlists.get(sku, user)
                if entry.status == "offered" and plans[user] in ("claim", "leave"):
                    out.append((user, "claimed", inv.waitlists.claim(sku, user).id))
                    waiting.remove(user)
                elif entry.status == "offered":
                    out.append((user, "lapsing", ""))
                    waiting.remove(user)
            except InventoryError as error:
                out.append((user, error.code, ""))
                waiting.remove(user)
        time.sleep(0.02)
    out += [(user, "still_waiting", "") for user in waiting]
    return out


def release_slowly(redis_url: str, prefix: str, reservation_ids: list[str], seconds: float,
                   partitions: int = 0) -> int:
    """Release these reservations spread over `seconds`; return how many were released."""
    inv = wall_clock_inventory(redis_url, prefix, partitions)
    released = 0
    for reservation_id in reservation_ids:
        inv.reservations.release(reservation_id)
        released += 1
        time.sleep(seconds / max(len(reservation_ids), 1))
    return released

