"""Hypothesis drives random operations against real Redis and a plain-Python model of the rules."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from inventory import Inventory, Settings
from tests.clocks import ManualClock
from inventory.errors import InventoryError
from tests.conftest import delete_prefix

SKUS = ["A", "B", "C"]
USERS = ["u1", "u2", "u3"]
EVENTS = ["e1", "e2"]


@dataclass
class P:
    total: int = 0
    avail: int = 0
    held: int = 0
    sold: int = 0
    limit: int = 0
    paused: bool = False


@dataclass
class R:
    user: str
    lines: dict[str, int]
    exp: int
    status: str = "held"
    live: set[str] = field(default_factory=set)
    oid: bool = False
    events: dict[str, str] = field(default_factory=dict)
    uncounted: set[str] = field(default_factory=set)


class Model:
    """The rules of DEVELOPERS.md/issue 2 written plainly; every script must agree with it."""

    def __init__(self) -> None:
        self.products: dict[str, P] = {}
        self.res: dict[str, R] = {}
        self.buyers: Counter[tuple[str, str]] = Counter()

    def _give_back(self, r: R, sku: str) -> None:
        if sku in r.live:
            r.live.discard(sku)
            q, p = r.lines[sku], self.products[sku]
            p.avail += q
            p.held -= q
            self.buyers[(sku, r.user)] -= q

    def reclaim(self, sku: str, now: int) -> None:
        for r in self.res.values():
            if r.status == "held" and r.exp <= now:
                self._give_back(r, sku)

    def _check_line(self, sku: str, grow: int, user: str) -> str | None:
        p = self.products.get(sku)
        if p is None:
            return "product_not_found"
        if p.paused:
            return "sale_not_active"
        if p.avail < grow:
            return "sold_out"
        if p.limit and self.buyers[(sku, user)] + grow > p.limit:
            return "limit_exceeded"
        return None

    def reserve(self, rid: str, user: str, lines: dict[str, int], exp: int, now: int) -> str:
        for sku in lines:
            if sku in self.products:
                self.reclaim(sku, now)
        for sku, q in lines.items():
            if (error := self._check_line(sku, q, user)) is not None:
                return error
        for sku, q in lines.items():
            p = self.products[sku]
            p.avail -= q
            p.held += q
            self.buyers[(sku, user)] += q
        self.res[rid] = R(user, dict(lines), exp, live=set(lines))
        return "ok"

    def amend(self, rid: str, changes: dict[str, int], now: int) -> str:
        r = self.res[rid]
        if r.status == "expired":
            return "reservation_expired"
        if r.status != "held":
            return "reservation_closed"
        if now >= r.exp or r.live != set(r.lines):
            self._release_all(r)
            r.status = "expired"
            return "reservation_expired"
        count = len(r.lines) + sum(1 for s, q in changes.items() if q and s not in r.lines) \
            - sum(1 for s, q in changes.items() if not q and s in r.lines)
        if count < 1:
            return "invalid_argument"
        for sku, q in changes.items():
            if q > r.lines.get(sku, 0) and sku in self.products:
                self.reclaim(sku, now)
        for sku, q in changes.items():
            grow = q - r.lines.get(sku, 0)
            if grow > 0 and (error := self._check_line(sku, grow, r.user)) is not None:
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
                    r.live.add(sku)
                else:
                    del r.lines[sku]
                    r.live.discard(sku)
        return "ok"

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
            if not p.limit:  # only a SKU with a per-user limit keeps ordered units in the count
                self.buyers[(sku, r.user)] -= q
                r.uncounted.add(sku)
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
        if now >= r.exp or r.live != set(r.lines):
            self._release_all(r)
            r.status = "expired"
            return "reservation_expired"
        self._sell(r)
        r.status = "pending_payment"
        return "ok"

    def pay(self, rid: str, event: str, result: str, now: int) -> str:
        r = self.res[rid]
        if event in r.events:
            return "ok" if r.events[event] == result else "idempotency_key_reused"
        if r.status == "held":
            is_open = now < r.exp and r.live == set(r.lines)
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
                    if sku not in r.uncounted:
                        self.buyers[(sku, r.user)] -= q
                r.status = "payment_failed"
        elif result == "paid" and r.status in ("released", "expired", "payment_failed"):
            r.status, r.oid = "refund_required", True
        r.events[event] = result
        return "ok"

    def sweep(self, now: int) -> None:
        for r in self.res.values():
            if r.status == "held" and r.exp <= now:
                self._release_all(r)
                r.status = "expired"

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


lines_strategy = st.dictionaries(st.sampled_from(SKUS), st.integers(1, 3), min_size=1, max_size=3)


class InventoryMachine(RuleBasedStateMachine):
    client: redis.Redis

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"fstest:{uuid.uuid4().hex[:12]}"
        self.clock = ManualClock()
        self.inv = Inventory(self.client, Settings(key_prefix=self.prefix), self.clock)
        self.model = Model()
        self.ids: list[str] = []
        for sku in SKUS[:2]:  # "C" stays unknown until an admin creates it
            self._create(sku, 6, limit=4 if sku == "A" else 0)

    def _create(self, sku: str, units: int, limit: int = 0) -> None:
        self.inv.catalog.configure(sku, name=sku, price=100, per_user_limit=limit)
        self.inv.catalog.adjust_stock(sku, set_total=units)
        self.model.products[sku] = P(units, units, 0, 0, limit)

    def _outcome(self, call) -> str:  # noqa: ANN001
        try:
            call()
            return "ok"
        except InventoryError as error:
            return error.code

    @rule(user=st.sampled_from(USERS), lines=lines_strategy, ttl=st.integers(1, 30))
    def reserve(self, user: str, lines: dict[str, int], ttl: int) -> None:
        now = self.clock.now_ms()
        try:
            rid = self.inv.reservations.reserve(user, lines, ttl_seconds=ttl).id
            actual = "ok"
        except InventoryError as error:
            rid, actual = "", error.code
        expected = self.model.reserve(rid, user, lines, now + ttl * 1000, now)
        assert actual == expected
        if rid:
            self.ids.append(rid)

    @rule(data=st.data(), changes=st.dictionaries(st.sampled_from(SKUS), st.integers(0, 3), min_size=1))
    def amend(self, data: st.DataObject, changes: dict[str, int]) -> None:
        if not self.ids:
            return
        rid = data.draw(st.sampled_from(self.ids))
        r = self.model.res[rid]
        actual = self._outcome(lambda: self.inv.reservations.amend(rid, changes, user_id=r.user))
        assert actual == self.model.amend(rid, changes, self.clock.now_ms())

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if self.ids:
            rid = data.draw(st.sampled_from(self.ids))
            actual = self._outcome(lambda: self.inv.reservations.release(rid))
            assert actual == self.model.release(rid, self.clock.now_ms())

    @rule(data=st.data())
    def checkout(self, data: st.DataObject) -> None:
        if self.ids:
            rid = data.draw(st.sampled_from(self.ids))
            actual = self._outcome(lambda: self.inv.reservations.checkout(rid))
            assert actual == self.model.checkout(rid, self.clock.now_ms())

    @rule(data=st.data(), event=st.sampled_from(EVENTS), result=st.sampled_from(["paid", "failed"]))
    def pay(self, data: st.DataObject, event: str, result: str) -> None:
        if self.ids:
            rid = data.draw(st.sampled_from(self.ids))
            actual = self._outcome(lambda: self.inv.reservations.record_payment(
                event_id=event, result=result, reservation_id=rid))
            assert actual == self.model.pay(rid, event, result, self.clock.now_ms())

    @rule(seconds=st.integers(0, 40))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def expire_sweep(self) -> None:
        self.inv.reservations.expire_due(batch_size=2)
        self.model.sweep(self.clock.now_ms())

    @rule(sku=st.sampled_from(SKUS), mode=st.sampled_from(["set", "add"]), units=st.integers(-4, 8))
    def admin_adjust(self, sku: str, mode: str, units: int) -> None:
        if mode == "set" and units < 0:
            units = -units
        kwargs = {"set_total": units} if mode == "set" else {"add": units}
        actual = self._outcome(lambda: self.inv.catalog.adjust_stock(sku, **kwargs))
        assert actual == self.model.adjust(sku, mode, units)

    @rule(sku=st.sampled_from(SKUS))
    def admin_create_or_toggle_pause(self, sku: str) -> None:
        if sku not in self.model.products:
            self._create(sku, 3)
            return
        p = self.model.products[sku]
        p.paused = not p.paused
        self.inv.catalog.configure(sku, paused=p.paused)

    @invariant()
    def counters_match_the_model(self) -> None:
        for sku, p in self.model.products.items():
            level = self.inv.catalog.get(sku).stock
            assert (level.total, level.available, level.held, level.sold) == (p.total, p.avail, p.held, p.sold)
            assert level.available + level.held + level.sold == level.total
            assert min(level.available, level.held, level.sold) >= 0
            buyers = {k.decode(): int(v) for k, v in self.client.hgetall(self.inv.keys.sku(sku).buyers).items()}
            assert buyers == {u: n for (s, u), n in self.model.buyers.items() if s == sku and n}

    @invariant()
    def statuses_match_the_model(self) -> None:
        now = self.clock.now_ms()
        for rid, r in self.model.res.items():
            shown = "expired" if r.status == "held" and now >= r.exp else r.status
            assert self.inv.reservations.get(rid).status.value == shown

    def teardown(self) -> None:
        delete_prefix(self.client, self.prefix)


@pytest.mark.slow
def test_random_operation_sequences_match_the_model_on_real_redis(real_redis: redis.Redis) -> None:
    InventoryMachine.client = real_redis
    run_state_machine_as_test(
        InventoryMachine,
        settings=settings(max_examples=150, stateful_step_count=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
