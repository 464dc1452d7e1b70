"""A realistic mixed load: buyers reserve, amend, check out, release, let holds expire and pay; the
payment provider answers paid/failed with duplicates and out-of-order events; keyed requests are retried."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from chaos.client import Answer, Client

# sku -> (stock, per-user limit; 0 = none). HOT sells out under every load; MUG's limit is reached.
CATALOG: dict[str, tuple[int, int]] = {"HOT": (40, 2), "TEE": (150, 0), "MUG": (80, 3), "CAP": (400, 0)}
# The recovery probe's own SKU, which the buyers never pick: a long, fast load that sells out the
# catalogue must not look like a system that never recovered.
PROBE_CATALOG: dict[str, tuple[int, int]] = {"PROBE": (1000, 0)}
HOLD_TTL_S, SHORT_TTL_S = 8, 2
RETRY_CODES = {"unavailable", "idempotency_request_in_progress", "rate_limited"}
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class LoadSize:
    """How hard one scenario pushes."""

    buyers: int
    seconds: float
    think_s: float = 0.05
    hold_ttl_s: int = HOLD_TTL_S  # the buyers' holds; the run settles only once the last one expired
    max_rounds: int = 10_000  # per buyer, a bound besides the time


def seed(client: Client) -> None:
    """Create the catalogue through the admin API (retried while the stack settles)."""
    for sku, (stock, limit) in {**CATALOG, **PROBE_CATALOG}.items():
        body = {"name": f"chaos {sku}", "price": 1000, "stock": stock, "per_user_limit": limit}
        answer = retry(lambda: client.request("seed", "PUT", f"/v1/admin/products/{sku}", body, admin=True,
                                              record=False))
        if not answer.ok:
            raise RuntimeError(f"seeding {sku} failed: {answer}")


def retry(call: Callable[[], Answer], attempts: int = MAX_ATTEMPTS) -> Answer:
    """Repeat a call that is safe to repeat while it got no answer or a 'retry shortly' one."""
    answer = call()
    for attempt in range(1, attempts):
        if answer.status != 0 and answer.code not in RETRY_CODES:
            break
        time.sleep(min(2.0, 0.25 * attempt))
        answer = call()
    return answer


class Buyer:
    """One user's session; every acknowledged effect goes into the witness."""

    def __init__(self, client: Client, index: int, seed_value: int) -> None:
        self.c, self.w = client, client.witness
        self.user = f"u{index}"
        self.rng = random.Random(seed_value * 7919 + index)

    def run(self, size: LoadSize, stop_at: float, stop: threading.Event) -> None:
        self.ttl = size.hold_ttl_s
        for _ in range(size.max_rounds):
            if time.time() >= stop_at or stop.is_set():
                return
            self.round()
            time.sleep(self.rng.uniform(0, 2 * size.think_s))

    def round(self) -> None:
        plan = self.rng.choices(["checkout", "release", "expire", "pay_first"], [55, 15, 15, 15])[0]
        rid = self.reserve(SHORT_TTL_S if plan == "expire" else self.ttl)
        if rid is None:
            return
        if self.rng.random() < 0.3:
            self.amend(rid)
        if plan == "checkout":
            order = self.checkout(rid)
            if order:
                self.pay(rid, order)
        elif plan == "release":
            self.c.request("release", "DELETE", f"/v1/reservations/{rid}?user_id={self.user}")
        elif plan == "expire":
            time.sleep(SHORT_TTL_S + 0.5)
            self.checkout(rid)  # expected: 409 reservation_expired (or the order if it made it in time)
        else:
            self.pay_event(rid, {"reservation_id": rid}, "paid")  # paid before checkout: one step
            if self.rng.random() < 0.5:
                self.checkout(rid)  # a checkout arriving after its payment: replay or reservation_closed

    def reserve(self, ttl: int) -> str | None:
        skus = self.rng.sample(sorted(CATALOG), self.rng.choice([1, 1, 2]))
        body = {"user_id": self.user, "ttl_seconds": ttl,
                "items": [{"sku": s, "qty": self.rng.choice([1, 1, 2])} for s in skus]}
        if self.rng.random() < 0.5:
            key = uuid.uuid4().hex
            answer = retry(lambda: self.c.request("reserve", "POST", "/v1/reservations", body,
                                                  headers={"Idempotency-Key": key}))
            self.note_key(key, answer)
        else:
            answer = self.c.request("reserve", "POST", "/v1/reservations", body)
        if answer.status != 201 or answer.data is None:
            return None
        rid = answer.data["id"]
        with self.w.lock:
            self.w.reservations[rid] = {"user": self.user, "t": answer.t_done}
        return rid

    def amend(self, rid: str) -> None:
        sku = self.rng.choice(sorted(CATALOG))
        self.c.request("amend", "PATCH", f"/v1/reservations/{rid}",
                       {"user_id": self.user, "items": [{"sku": sku, "qty": self.rng.choice([0, 1, 2])}]})

    def checkout(self, rid: str) -> str | None:
        with self.w.lock:
            self.w.checkout_tried.add(rid)
        key = uuid.uuid4().hex
        headers = {"Idempotency-Key": key} if self.rng.random() < 0.6 else {}
        answer = retry(lambda: self.c.request("checkout", "POST", f"/v1/reservations/{rid}/checkout",
                                              {"user_id": self.user}, headers=headers))
        if headers:
            self.note_key(key, answer)
        return self.note_order(rid, answer)

    def note_order(self, rid: str, answer: Answer) -> str | None:
        if answer.status != 202 or answer.data is None:
            return None
        oid = answer.data["order_id"]
        with self.w.lock:
            self.w.checkouts.setdefault(rid, (oid, answer.t_done, answer.t_sent))
            self.w.order_status[oid] = (answer.t_done, answer.data["status"], answer.t_sent)
        return oid

    def pay(self, rid: str, order: str) -> None:
        roll = self.rng.random()
        if roll < 0.12:  # out of order: a late 'failed' arrives after 'paid' (or the reverse)
            first, second = self.rng.sample(["paid", "failed"], 2)
            self.pay_event(rid, {"order_id": order}, first)
            self.pay_event(rid, {"order_id": order}, second)
        elif roll < 0.72:
            self.pay_event(rid, {"order_id": order}, "paid")
        elif roll < 0.9:
            self.pay_event(rid, {"order_id": order}, "failed")
        # else: never paid; stays pending_payment

    def pay_event(self, rid: str, target: dict[str, str], status: str) -> None:
        """One provider event, retried with the same id until answered; sometimes delivered twice."""
        event = f"ev-{uuid.uuid4().hex}"
        body = {"event_id": event, **target, "status": status}
        if "reservation_id" in target:
            with self.w.lock:
                self.w.checkout_tried.add(rid)
        answer = retry(lambda: self.c.webhook("webhook", body, msg_id=f"msg-{event}"))
        self.note_payment(event, status, answer)
        if answer.ok and self.rng.random() < 0.3:
            self.note_payment(event, status, self.c.webhook("webhook_dup", body, msg_id=f"msg-{event}"))

    def note_payment(self, event: str, sent: str, answer: Answer) -> None:
        if not answer.ok or answer.data is None:
            return
        oid, status = answer.data.get("order_id"), answer.data.get("status")
        with self.w.lock:
            self.w.payments[event] = {"order": oid, "sent": sent, "status": status, "t": answer.t_done,
                                      "t0": answer.t_sent}
            if oid:
                prior = self.w.order_status.get(oid)
                if prior is None or prior[0] <= answer.t_done:
                    self.w.order_status[oid] = (answer.t_done, status, answer.t_sent)

    def note_key(self, key: str, answer: Answer) -> None:
        if answer.data is None:
            return
        result = answer.data.get("order_id") or answer.data.get("id")
        with self.w.lock:
            self.w.keyed.setdefault(f"{self.user}:{key}", set()).add(str(result))


def run_load(client: Client, size: LoadSize, seed_value: int, stop: threading.Event,
             extra: list[Callable[[], Any]] | None = None) -> float:
    """All buyers for size.seconds (or until stop); returns the seconds it took."""
    t0 = time.time()
    stop_at = t0 + size.seconds
    threads = [threading.Thread(target=Buyer(client, i, seed_value).run, args=(size, stop_at, stop), daemon=True)
               for i in range(size.buyers)]
    threads += [threading.Thread(target=fn, daemon=True) for fn in extra or []]
    for t in threads:
        t.start()
    for t in threads:
        t.join(size.seconds + 120)  # each buyer's last call is bounded by the client timeout and retries
    return time.time() - t0
