"""The reservation rules written plainly, for model-based tests: every script must agree with this."""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from inventory.keys import HOLD_BUCKETS

LIGHT_HOLDS = 16  # holds a SKU keeps in its stock hash (lua/includes/common.lua)


def bucket_of(rid: str) -> int:
    """The hold bucket a reservation's holds on a busy SKU live in (inventory/keys.py, SkuKeys.bucket_of)."""
    return zlib.crc32(rid[2:].encode()) % HOLD_BUCKETS


@dataclass
class P:
    """A product's counters and the settings that decide reservations."""

    total: int = 0
    avail: int = 0
    held: int = 0
    sold: int = 0
    limit: int = 0
    paused: bool = False
    busy: bool = False  # new holds go to hold buckets: lazy expiry reaches only the caller's bucket


@dataclass
class R:
    """A reservation: its lines, expiry, status, which lines still hold stock, payment events seen."""

    user: str
    lines: dict[str, int]
    exp: int
    status: str = "held"
    live: set[str] = field(default_factory=set)
    oid: bool = False
    events: dict[str, str] = field(default_factory=dict)
    counted: set[str] = field(default_factory=set)  # ordered lines still in the buyer's count
    bucketed: set[str] = field(default_factory=set)  # lines held in the reservation's hold bucket


class Model:
    """Products, reservations and per-user counts; each method returns the outcome code it expects."""

    def __init__(self) -> None:
        self.products: dict[str, P] = {}
        self.res: dict[str, R] = {}
        self.buyers: Counter[tuple[str, str]] = Counter()
        self.all_paused = False  # the global sale switch

    def _give_back(self, r: R, sku: str) -> None:
        if sku in r.live:
            r.live.discard(sku)
            q, p = r.lines[sku], self.products[sku]
            p.avail += q
            p.held -= q
            self.buyers[(sku, r.user)] -= q

    def reclaim(self, sku: str, now: int, rid: str | None = None) -> None:
        """Lazy expiry: every due hold on the SKU goes back (records still say 'held'); on a busy SKU a
        call on behalf of reservation `rid` reaches only the holds in rid's hold bucket."""
        for other_rid, r in self.res.items():
            elsewhere = rid is not None and sku in r.bucketed and bucket_of(other_rid) != bucket_of(rid)
            if r.status == "held" and r.exp <= now and not elsewhere:
                self._give_back(r, sku)

    def _put(self, rid: str, r: R, sku: str) -> None:
        """A new hold of r on sku: the 17th present hold makes the SKU busy (the others stay where they
        are, in the holds zset); a busy SKU's new holds go to the reservation's hold bucket."""
        p = self.products[sku]
        if not p.busy and sum(1 for o in self.res.values() if sku in o.live and o is not r) >= LIGHT_HOLDS:
            p.busy = True
        if p.busy:
            r.bucketed.add(sku)
        else:
            r.bucketed.discard(sku)

    def _due(self, sku: str, now: int) -> bool:
        return any(r.status == "held" and r.exp <= now and sku in r.live for r in self.res.values())

    def _sweeping_when_due(self, attempt: Callable[[], tuple[str, str] | None], now: int) -> str | None:
        """attempt() -> (error, sku) or None, made up to 4 times: refused sold out on a busy SKU with holds
        due in other buckets, the SKU is swept first (inventory/part_calls.py, _sweeping_when_due)."""
        for tries in range(4):
            error = attempt()
            if error is None:
                return None
            if error[0] != "sold_out" or tries == 3 or not (self.products[error[1]].busy and self._due(error[1], now)):
                return error[0]
            self.reclaim(error[1], now)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_line(self, sku: str, grow: int, user: str) -> str | None:
        p = self.products.get(sku)
        if p is None:
            return "product_not_found"
        if p.paused or self.all_paused:
            return "sale_not_active"
        if p.avail < grow:
            return "sold_out"
        if p.limit and self.buyers[(sku, user)] + grow > p.limit:
            return "limit_exceeded"
        return None

    def reserve(self, rid: str, user: str, lines: dict[str, int], exp: int, now: int) -> str:
        """`rid` is the attempt's id, also when it is refused (its token picks its hold buckets)."""
        if (error := self._sweeping_when_due(lambda: self._try_reserve(rid, user, lines, now), now)) is not None:
            return error
        r = self.res[rid] = R(user, dict(lines), exp)
        for sku, q in lines.items():
            p = self.products[sku]
            p.avail -= q
            p.held += q
            self.buyers[(sku, user)] += q
            self._put(rid, r, sku)
            r.live.add(sku)
        return "ok"

    def _try_reserve(self, rid: str, user: str, lines: dict[str, int], now: int) -> tuple[str, str] | None:
        for sku in lines:
            if sku in self.products:
                self.reclaim(sku, now, rid)
        for sku, q in lines.items():
            if (error := self._check_line(sku, q, user)) is not None:
                return error, sku
        return None

    def _expire(self, r: R) -> str:
        self._release_all(r)
        r.status = "expired"
        return "reservation_expired"

    def _intact(self, r: R, now: int) -> bool:
        return now < r.exp and r.live == set(r.lines)

    def amend(self, rid: str, changes: dict[str, int], now: int) -> str:
        r = self.res[rid]
        if r.status == "expired":
            return "reservation_expired"
        if r.status != "held":
            return "reservation_closed"
        if not self._intact(r, now):
            return self._expire(r)
        count = len(r.lines) + sum(1 for s, q in changes.items() if q and s not in r.lines) \
            - sum(1 for s, q in changes.items() if not q and s in r.lines)
        if count < 1:
            return "invalid_argument"
        if (error := self._sweeping_when_due(lambda: self._try_amend(rid, r, changes, now), now)) is not None:
            return error
        for sku, q in changes.items():
            grow = q - r.lines.get(sku, 0)
            if grow:
                p = self.products[sku]
                p.avail -= grow
                p.held += grow
                self.buyers[(sku, r.user)] += grow
                if q:
                    r.lines[sku] = q
                    self._put(rid, r, sku)
                    r.live.add(sku)
                else:
                    del r.lines[sku]
                    r.live.discard(sku)
        return "ok"

    def _try_amend(self, rid: str, r: R, changes: dict[str, int], now: int) -> tuple[str, str] | None:
        for sku, q in changes.items():
            if q > r.lines.get(sku, 0) and sku in self.products:
                self.reclaim(sku, now, rid)
        for sku, q in sorted(changes.items()):  # the script gets (and checks) lines in SKU order
            grow = q - r.lines.get(sku, 0)
            if grow > 0 and (error := self._check_line(sku, grow, r.user)) is not None:
                return error, sku
        return None

    def _release_all(self, r: R) -> None:
        for sku in list(r.live):
            self._give_back(r, sku)

    def release(self, rid: str, now: int) -> str:
        r = self.res[rid]
        if r.status in ("released", "expired", "payment_failed"):
            return "ok"
        if r.status != "held":
            return "reservation_closed"
        self._release_all(r)
        r.status = "expired" if now >= r.exp else "released"
        return "ok"

    def _sell(self, r: R) -> None:
        for sku, q in r.lines.items():
            p = self.products[sku]
            p.held -= q
            p.sold += q
            if p.limit:  # a SKU with a per-user limit keeps ordered units in the buyer's count
                r.counted.add(sku)
            else:
                self.buyers[(sku, r.user)] -= q
        r.live.clear()
        r.oid = True

    def checkout(self, rid: str, now: int) -> str:
        r = self.res[rid]
        if r.oid:
            return "ok"
        if r.status == "expired":
            return "reservation_expired"
        if r.status != "held":
            return "reservation_closed"
        if not self._intact(r, now):
            return self._expire(r)
        self._sell(r)
        r.status = "pending_payment"
        return "ok"

    def pay(self, rid: str, event: str, result: str, now: int) -> str:
        r = self.res[rid]
        if event in r.events:
            return "ok" if r.events[event] == result else "idempotency_key_reused"
        if r.status == "held":
            is_open = self._intact(r, now)
            if is_open and result == "paid":
                self._sell(r)
                r.status = "paid"
            else:
                self._release_all(r)
                if result == "paid":
                    r.status, r.oid = "refund_required", True
                else:
                    r.status = "payment_failed" if is_open else "expired"
        elif r.status == "pending_payment":
            if result == "paid":
                r.status = "paid"
            else:
                for sku, q in r.lines.items():
                    p = self.products[sku]
                    p.sold -= q
                    p.avail += q
                    if sku in r.counted:
                        self.buyers[(sku, r.user)] -= q
                r.counted.clear()
                r.status = "payment_failed"
        elif result == "paid" and r.status in ("released", "expired", "payment_failed"):
            r.status, r.oid = "refund_required", True
        r.events[event] = result
        return "ok"

    def sweep(self, now: int) -> None:
        """The sweeper gives back every due hold SKU by SKU, as lazy expiry does (records still say 'held')."""
        for sku in list(self.products):
            self.reclaim(sku, now)

    def adjust(self, sku: str, mode: str, units: int) -> str:
        p = self.products.get(sku)
        if p is None:
            return "product_not_found"
        new_total = units if mode == "set" else p.total + units
        if new_total < p.held + p.sold:
            return "stock_below_committed"
        p.avail += new_total - p.total
        p.total = new_total
        return "ok"

    def shown_status(self, rid: str, now: int) -> str:
        """What a read of the reservation says: a held one past its expiry reads as expired."""
        r = self.res[rid]
        return "expired" if r.status == "held" and now >= r.exp else r.status
