"""Waitlist hand-off: a sell-out where a fifth of the holds expire unpaid and the losers wait in line.

    .venv/bin/python -m bench.waitlist_handoff [--smoke]

Issue 13's scenario, through the core on a private redis-server with Redis's real clock, in real
processes: BUYERS buyers race for UNITS units with short holds; winners check out and pay, except a
fifth who abandon their hold; losers join the waitlist and poll their entry every POLL_MS, claim an
offer, check out and pay. A sweeper process runs `Inventory.sweep()` every SWEEP_S (as beat does), and
a bot process keeps trying to reserve during the tail. Reported: units returned (expired holds, lapsed
offers) and how many of them reached a waiting buyer; time from a hold's expiry to the offer it became
(the return takes effect at the first script after the expiry instant: lazy expiry or the sweeper);
the bot's successes while buyers waited (should be 0); final paid units (must equal UNITS).

The accounting is exact, not sampled: the bot runs each script inside MULTI/EXEC between two reads of
the SKU's waitlist counters (reads taken apart from the call raced with joins and miscounted one unit in
one CI run), its holds outlive the release, and a hold that expired before the first buyer joined is
counted as back on sale (the join script reclaims due holds before it queues anyone).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import random
import time
from dataclasses import dataclass
from typing import Any

from bench.solo import main, parser, write_json
from inventory import Inventory, Settings
from inventory.errors import InventoryError, NotSoldOut, SoldOut

NAME = "waitlist_handoff"
SKU = "WL-HOT"
HOLD_S, CLAIM_S, POLL_MS, SWEEP_S = 2, 3, 50, 0.5


@dataclass(frozen=True)
class Size:
    units: int
    buyers: int
    processes: int


def _settings(port: int) -> Settings:
    return Settings(redis_url=f"redis://127.0.0.1:{port}/0", key_prefix="fswait", hold_ttl_seconds=HOLD_S,
                    waitlist_claim_seconds=CLAIM_S, soldout_cache_ttl_ms=0)


def _pay(inv: Inventory, reservation_id: str, event: str) -> None:
    order = inv.reservations.checkout(reservation_id)
    inv.reservations.record_payment(event_id=event, result="paid", order_id=order.id)


def buyer(port: int, users: list[str], seed: int, out: Any) -> None:
    """Reserve once; pay (80%) or abandon the hold (20%); if sold out, wait in line and take the offer."""
    inv = Inventory.from_settings(_settings(port))
    rng = random.Random(seed)
    rows, waiting = [], []
    for user in users:
        while True:
            try:
                held = inv.reservations.reserve(user, {SKU: 1})
                if rng.random() < 0.2:
                    rows.append(("abandoned", user, int(held.expires_at.timestamp() * 1000), 0))
                else:
                    _pay(inv, held.id, f"pay-{user}")
                    rows.append(("paid", user, 0, 0))
                break
            except SoldOut:
                try:
                    entry = inv.waitlists.join(SKU, user, 1)
                except NotSoldOut:
                    continue  # a hold expired in between and no one waited: its unit is on sale again
                # Redis's time of the join script: the entry's deadline minus its lifetime (or claim window)
                window = CLAIM_S if entry.status == "offered" else inv.settings.waitlist_ttl_seconds
                rows.append(("joined", user, int(entry.until.timestamp() * 1000) - window * 1000, 0))
                waiting.append(user)
                break
    deadline = time.monotonic() + 120
    while waiting and time.monotonic() < deadline:
        for user in list(waiting):
            try:
                entry = inv.waitlists.get(SKU, user)
            except InventoryError:
                waiting.remove(user)
                continue
            if entry.status == "offered":
                offered_ms = int(entry.until.timestamp() * 1000) - CLAIM_S * 1000
                seen_ms = int(time.time() * 1000)
                try:
                    held = inv.waitlists.claim(SKU, user)
                    _pay(inv, held.id, f"pay-{user}")
                    rows.append(("paid_from_waitlist", user, offered_ms, seen_ms))
                except InventoryError as error:
                    rows.append((f"claim_{error.code}", user, offered_ms, seen_ms))
                waiting.remove(user)
        if not waiting:
            break
        time.sleep(POLL_MS / 1000)
        if inv.catalog.get(SKU).stock.sold >= _units(inv):
            break
    rows += [("still_waiting", user, 0, 0) for user in waiting]
    out.put(rows)


def _units(inv: Inventory) -> int:
    return inv.catalog.get(SKU).stock.total


def sweeper(port: int, stop: Any) -> None:
    inv = Inventory.from_settings(_settings(port))
    while not stop.is_set():
        inv.sweep()
        time.sleep(SWEEP_S)


class _Observed:
    """Runs each script in MULTI/EXEC after a read of the SKU's waitlist counters and before another, so
    what the call did to the queue is known exactly (separate reads race with joins and offers)."""

    def __init__(self, inv: Inventory) -> None:
        self.scripts, self.redis = inv.ctx.scripts, inv.ctx.redis
        self.stock = inv.ctx.keys.sku(SKU).stock
        # script -> its last call's (units waiting buyers still want, units set aside for them), before and after
        self.last: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def call(self, name: str, keys: Any, args: Any, client: Any = None) -> list[Any]:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hmget(self.stock, "wq", "owe")
        self.scripts.call(name, keys, args, client=pipe)
        pipe.hmget(self.stock, "wq", "owe")
        before, reply, after = pipe.execute()
        self.last[name] = (tuple(int(v or 0) for v in before), tuple(int(v or 0) for v in after))
        return reply


def bot(port: int, stop: Any, out: Any) -> None:
    """A retry loop during the tail: every success while buyers wait is a unit the queue lost."""
    inv = Inventory.from_settings(_settings(port))
    observed = _Observed(inv)
    inv.ctx.scripts = observed  # type: ignore[assignment]
    won_while_queue = attempts = released = held_units = 0
    while not stop.is_set():
        attempts += 1
        try:
            # A hold long enough never to expire before the release below: an expiry's unit would go
            # unseen (the return happens inside some other process's script).
            held = inv.reservations.reserve(f"bot-{attempts}", {SKU: 1}, ttl_seconds=60)
            held_units += 1
            wanted, set_aside = observed.last["reserve"][1]
            won_while_queue += wanted > set_aside  # a buyer still waited for a unit the bot now holds
            inv.reservations.release(held.id)  # its unit comes back: set aside for the queue if anyone waits
            before, after = observed.last["release"]
            released += after[1] - before[1]
        except InventoryError:
            pass
        time.sleep(0.002)
    out.put({"attempts": attempts, "held": held_units, "won_while_buyers_waited": won_while_queue,
             "released_while_buyers_waited": released})


def run(ctx: Any) -> dict:
    """Scenario entry point (bench/suite.py contract)."""
    size = Size(100, 500, 4) if ctx.smoke else Size(1_000, 5_000, 8)
    settings = _settings(ctx.redis_port)
    inv = Inventory.from_settings(settings)
    inv.catalog.configure(SKU, name="waitlist hand-off", price=1000, currency="USD")
    inv.catalog.adjust_stock(SKU, set_total=size.units, reason="seed")
    mp = multiprocessing.get_context("spawn")
    out, bot_out, stop = mp.Queue(), mp.Queue(), mp.Event()
    users = [f"buyer-{n}" for n in range(size.buyers)]
    groups = [users[i::size.processes] for i in range(size.processes)]
    started = time.monotonic()
    helpers = [mp.Process(target=sweeper, args=(ctx.redis_port, stop)),
               mp.Process(target=bot, args=(ctx.redis_port, stop, bot_out))]
    buyers = [mp.Process(target=buyer, args=(ctx.redis_port, group, seed, out)) for seed, group in enumerate(groups)]
    for proc in helpers + buyers:
        proc.start()
    rows = [row for _ in buyers for row in out.get(timeout=300)]
    stop.set()
    bot_result = bot_out.get(timeout=60)
    for proc in helpers + buyers:
        proc.join(timeout=30)
    seconds = time.monotonic() - started
    level = inv.catalog.get(SKU).stock
    kinds: dict[str, int] = {}
    for kind, *_ in rows:
        kinds[kind] = kinds.get(kind, 0) + 1
    # A hold that expired before the first buyer joined went back on sale (the join script reclaims due
    # holds before it queues anyone, and every buyer who joined waits to the end): no one was waiting for it.
    queue_formed = min((at for kind, _, at, _ in rows if kind == "joined"), default=None)
    expired = sorted(expires for kind, _, expires, _ in rows if kind == "abandoned")
    abandoned = [at for at in expired if queue_formed is not None and at > queue_formed]
    offers = sorted(offered for kind, _, offered, _ in rows if offered and kind not in ("abandoned", "joined"))
    seen = [seen_ms - offered for kind, _, offered, seen_ms in rows if seen_ms]
    kinds.pop("joined", None)
    # Each expired hold's unit -> the first offer made at or after its expiry instant (one unit each).
    delays, free = [], list(offers)
    for expiry in abandoned:
        match = next((o for o in free if o >= expiry), None)
        if match is not None:
            free.remove(match)
            delays.append(match - expiry)
    lapsed = kinds.get("claim_reservation_expired", 0)
    paid = kinds.get("paid", 0) + kinds.get("paid_from_waitlist", 0)
    result = {
        "scenario": NAME, "smoke": ctx.smoke, "size": size.__dict__, "seconds": round(seconds, 1),
        "settings": {"hold_s": HOLD_S, "claim_s": CLAIM_S, "poll_ms": POLL_MS, "sweep_s": SWEEP_S},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "outcomes": kinds, "expired_before_anyone_waited": len(expired) - len(abandoned), "returned_units": len(abandoned) + lapsed + bot_result["released_while_buyers_waited"],
        "offered_units": len(offers),
        "share_reaching_waiting_buyer": round(len(offers) / max(len(abandoned) + lapsed + bot_result["released_while_buyers_waited"], 1), 4),
        "return_to_offer_ms": _percentiles(delays), "offer_to_seen_ms": _percentiles(seen),
        "bot": bot_result, "final": {"total": level.total, "sold": level.sold, "held": level.held,
                                      "available": level.available, "paid_orders": paid},
    }
    failures = []
    if paid != size.units or level.sold != size.units:
        failures.append(f"paid {paid} / sold {level.sold}, expected {size.units}")
    if bot_result["won_while_buyers_waited"]:
        failures.append(f"the bot took {bot_result['won_while_buyers_waited']} units while buyers waited")
    result["failures"] = failures
    result["summary"] = [
        f"{size.buyers} buyers for {size.units} units, {kinds.get('abandoned', 0)} holds abandoned: "
        f"{len(offers)} of {result['returned_units']} returned units offered to waiting buyers "
        f"({result['share_reaching_waiting_buyer']:.0%}); return -> offer p50 {result['return_to_offer_ms']['p50']} ms, "
        f"p95 {result['return_to_offer_ms']['p95']} ms; paid {paid} of {size.units}; bot wins while buyers "
        f"waited: {bot_result['won_while_buyers_waited']} of {bot_result['attempts']} attempts; {seconds:.1f} s"]
    write_json(ctx, NAME, result)
    return result


def _percentiles(samples: list[float]) -> dict:
    if not samples:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(samples)
    return {"n": len(ordered), "p50": ordered[len(ordered) // 2], "p95": ordered[int(0.95 * (len(ordered) - 1))],
            "max": ordered[-1]}


if __name__ == "__main__":
    raise SystemExit(main(NAME, run, parser("python -m bench.waitlist_handoff", __doc__ or "").parse_args()))
