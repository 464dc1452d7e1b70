"""Waitlist hand-off: a sell-out where a fifth of the holds expire unpaid and the losers wait in line.

    .venv/bin/python -m bench.waitlist_handoff [--smoke] [--buckets B] [--claim-seconds S]

Issue 13's scenario, through the core on a private redis-server with Redis's real clock, in real
processes: BUYERS buyers race for UNITS units with short holds; winners check out and pay, except a
fifth who abandon their hold; losers join the waitlist and poll their entry every POLL_MS, claim an
offer, check out and pay. A sweeper process runs `Inventory.sweep()` every SWEEP_S (as beat does), and
a bot process keeps trying to reserve during the tail. Reported: units returned (expired holds, lapsed
offers) and how many of them reached a waiting buyer; time from a hold's expiry to the offer it became
(the return takes effect at the first script after the expiry instant: lazy expiry or the sweeper);
the bot's successes while buyers waited (should be 0); final paid units (must equal UNITS).
With `--buckets B` the SKU is split into B stock buckets over 8 partitions first (issue 12): units come
back to every bucket, are set aside there and reach the queue in bucket 0 through the sweeper or an
entry read; the result is `waitlist_handoff_b<B>.json` (`_c<S>` appended for a claim window other than 3 s).

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
HOLD_S, POLL_MS, SWEEP_S = 2, 50, 0.5
# The claim window; --claim-seconds sets it for the spawned processes through the environment.
CLAIM_S = int(os.environ.get("WAITLIST_HANDOFF_CLAIM_S", "3"))


@dataclass(frozen=True)
class Size:
    units: int
    buyers: int
    processes: int


def _settings(port: int, partitions: int = 0) -> Settings:
    return Settings(redis_url=f"redis://127.0.0.1:{port}/0", key_prefix="fswait", hold_ttl_seconds=HOLD_S,
                    waitlist_claim_seconds=CLAIM_S, soldout_cache_ttl_ms=0, redis_partitions=partitions)


def _pay(inv: Inventory, reservation_id: str, event: str) -> None:
    order = inv.reservations.checkout(reservation_id)
    inv.reservations.record_payment(event_id=event, result="paid", order_id=order.id)


def buyer(port: int, users: list[str], seed: int, out: Any, partitions: int = 0) -> None:
    """Reserve once; pay (80%) or abandon the hold (20%); if sold out, wait in line and take the offer."""
    inv = Inventory.from_settings(_settings(port, partitions))
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


def sweeper(port: int, stop: Any, partitions: int = 0) -> None:
    inv = Inventory.from_settings(_settings(port, partitions))
    while not stop.is_set():
        inv.sweep()
        time.sleep(SWEEP_S)


class _Observed:
    """Runs each script in MULTI/EXEC after a read of the SKU's waitlist counters and before another, so
    what the call did to the queue is known exactly (separate reads race with joins and offers)."""

    def __init__(self, inv: Inventory) -> None:
        self.scripts, self.redis = inv.ctx.scripts, inv.ctx.redis
        self.stock = inv.ctx.keys.sku(SKU).stock  # bucket 0: the queue's counters
        # every bucket's stock hash (one node: MULTI reads them all); units set aside are summed over them
        self.buckets = [inv.ctx.keys.sku(b).stock for b in inv.buckets.layout(SKU, fresh=True).buckets[1:]]
        # script -> its last call's (units waiting buyers still want, units set aside for them), before and after
        self.last: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def call(self, name: str, keys: Any, args: Any, client: Any = None) -> list[Any]:
        pipe = self.redis.pipeline(transaction=True)
        for _ in range(2):
            pipe.hmget(self.stock, "wq", "owe")
            for key in self.buckets:
                pipe.hget(key, "owe")
            if _ == 0:
                self.scripts.call(name, keys, args, client=pipe)
        replies = pipe.execute()
        size = 1 + len(self.buckets)
        before, reply, after = replies[:size], replies[size], replies[size + 1:]
        self.last[name] = (self._counts(before), self._counts(after))
        return reply

    @staticmethod
    def _counts(replies: list[Any]) -> tuple[int, int]:
        wanted, owed = (int(v or 0) for v in replies[0])
        return wanted, owed + sum(int(v or 0) for v in replies[1:])


def bot(port: int, stop: Any, out: Any, partitions: int = 0) -> None:
    """A retry loop during the tail: every success while buyers wait is a unit the queue lost."""
    inv = Inventory.from_settings(_settings(port, partitions))
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


def run(ctx: Any, buckets: int = 1) -> dict:
    """Scenario entry point (bench/suite.py contract); `buckets` > 1 splits the SKU first."""
    size = Size(100, 500, 4) if ctx.smoke else Size(1_000, 5_000, 8)
    partitions = 8 if buckets > 1 else 0
    name = result_name(buckets)
    settings = _settings(ctx.redis_port, partitions)
    inv = Inventory.from_settings(settings)
    inv.catalog.configure(SKU, name="waitlist hand-off", price=1000, currency="USD")
    inv.catalog.adjust_stock(SKU, set_total=size.units, reason="seed")
    if buckets > 1:
        inv.buckets.split(SKU, buckets)
    mp = multiprocessing.get_context("spawn")
    out, bot_out, stop = mp.Queue(), mp.Queue(), mp.Event()
    users = [f"buyer-{n}" for n in range(size.buyers)]
    groups = [users[i::size.processes] for i in range(size.processes)]
    started = time.monotonic()
    helpers = [mp.Process(target=sweeper, args=(ctx.redis_port, stop, partitions)),
               mp.Process(target=bot, args=(ctx.redis_port, stop, bot_out, partitions))]
    buyers = [mp.Process(target=buyer, args=(ctx.redis_port, group, seed, out, partitions))
              for seed, group in enumerate(groups)]
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
        "scenario": name, "smoke": ctx.smoke, "size": size.__dict__, "buckets": buckets,
        "seconds": round(seconds, 1),
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
    write_json(ctx, name, result)
    return result


def result_name(buckets: int) -> str:
    """waitlist_handoff[_b<buckets>][_c<claim seconds>]: the default run keeps the plain name."""
    return NAME + (f"_b{buckets}" if buckets > 1 else "") + (f"_c{CLAIM_S}" if CLAIM_S != 3 else "")


def _percentiles(samples: list[float]) -> dict:
    if not samples:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(samples)
    return {"n": len(ordered), "p50": ordered[len(ordered) // 2], "p95": ordered[int(0.95 * (len(ordered) - 1))],
            "max": ordered[-1]}


if __name__ == "__main__":
    _parser = parser("python -m bench.waitlist_handoff", __doc__ or "")
    _parser.add_argument("--buckets", type=int, default=1, help="split the SKU into this many stock buckets")
    _parser.add_argument("--claim-seconds", type=int, default=3, help="how long an offer waits for its buyer")
    _args = _parser.parse_args()
    os.environ["WAITLIST_HANDOFF_CLAIM_S"] = str(_args.claim_seconds)
    CLAIM_S = _args.claim_seconds
    raise SystemExit(main(result_name(_args.buckets), lambda ctx: run(ctx, _args.buckets), _args))
