"""Baskets across partitions under random interleavings and crashes (Hypothesis state machine).

Any operation may be killed after any number of its script calls. Whatever happened, every SKU keeps
available + held + sold == total at every step, and once the clock has moved past every hold and the
sweeper has run, each reservation's parts agree with their home and sold equals exactly the units of
the orders that stand (pending payment or paid): nothing oversold, nothing lost.
"""

from __future__ import annotations

from typing import Any, ClassVar

import fakeredis
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from inventory import Inventory, Settings
from inventory.errors import InventoryError
from inventory.multipart import other_parts
from inventory.part_calls import PartCalls
from tests.clocks import ManualClock
from tests.conftest import delete_prefix, delete_test_clocks
from tests.helpers import assert_holds_listed, make_product, stock
from tests.unit.test_scripts import same_partition_skus

STANDING = ("pending_payment", "paid")
STOCK = 6
CRASH = st.one_of(st.none(), st.none(), st.integers(0, 2))  # killed after that many script calls, or not
CALLS = ("reserve", "amend", "release_lines", "checkout", "record_payment", "pin", "abort_checkout", "attach_parts")


class Crash(BaseException):
    """The process died here."""


class Baskets(RuleBasedStateMachine):
    client: ClassVar[Any]
    prefix: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        delete_prefix(self.client, self.prefix)
        self.clock = ManualClock()
        self.inv = Inventory(self.client, Settings(key_prefix=self.prefix, redis_partitions=4), self.clock)
        a, b = same_partition_skus(self.inv.keys, 2)
        (c,) = same_partition_skus(self.inv.keys, 1, avoid={self.inv.keys.partition_of(a)})
        (d,) = same_partition_skus(self.inv.keys, 1, avoid={self.inv.keys.partition_of(a),
                                                             self.inv.keys.partition_of(c)})
        self.skus = sorted([a, b, c, d])
        for sku in self.skus:
            make_product(self.inv, sku, stock=STOCK)
        self.ids: list[str] = []
        self.events = 0

    @initialize(checked_out=st.booleans())
    def two_baskets(self, checked_out: bool) -> None:
        """Start with baskets over three partitions, so most steps meet one (one of them checked out)."""
        self.reserve("u9", [0, 2, 3], 1, 60, None)
        self.reserve("u8", [1, 2, 3], 1, 60, None)
        if checked_out:
            self.checkout(0, None)

    def _guarded(self, action: Any, crash: int | None = None) -> None:
        """Run one operation, killing it after `crash` script calls if set."""
        budget = [crash]
        originals = {name: getattr(PartCalls, name) for name in CALLS}

        def wrap(name: str) -> Any:
            def call(calls: PartCalls, *args: Any, **kwargs: Any) -> Any:
                if budget[0] is not None:
                    if budget[0] == 0:
                        raise Crash
                    budget[0] -= 1
                return originals[name](calls, *args, **kwargs)
            return call

        for name in CALLS:
            setattr(PartCalls, name, wrap(name))
        try:
            action()
        except (InventoryError, Crash):
            pass
        finally:
            for name, original in originals.items():
                setattr(PartCalls, name, original)

    @rule(user=st.sampled_from(["u1", "u2", "u3"]), picks=st.lists(st.integers(0, 3), min_size=2, max_size=4,
                                                                     unique=True),
          qty=st.integers(1, 2), ttl=st.integers(5, 60), crash=CRASH)
    def reserve(self, user: str, picks: list[int], qty: int, ttl: int, crash: int | None = None) -> None:
        def act() -> None:
            self.ids.append(self.inv.reservations.reserve(user, {self.skus[i]: qty for i in picks},
                                                          ttl_seconds=ttl).id)
        self._guarded(act, crash)

    @rule(n=st.integers(0, 3), picks=st.dictionaries(st.integers(0, 3), st.integers(0, 3), min_size=1, max_size=3),
          crash=CRASH)
    def amend(self, n: int, picks: dict[int, int], crash: int | None) -> None:
        if self.ids:
            rid = self._pick(n)
            self._guarded(lambda: self.inv.reservations.amend(rid, {self.skus[i]: q for i, q in picks.items()}), crash)

    @rule(n=st.integers(0, 3), crash=CRASH)
    def checkout(self, n: int, crash: int | None = None) -> None:
        if self.ids:
            self._guarded(lambda: self.inv.reservations.checkout(self._pick(n)), crash)

    @rule(n=st.integers(0, 3), result=st.sampled_from(["paid", "failed"]), by_order=st.booleans(), crash=CRASH)
    def pay(self, n: int, result: str, by_order: bool, crash: int | None = None) -> None:
        if self.ids:
            rid = self._pick(n)
            self.events += 1
            event = f"ev-{self.events}"
            if by_order:
                self._guarded(lambda: self.inv.reservations.record_payment(
                    event_id=event, result=result, order_id=f"o_{rid[2:]}"), crash)
            else:
                self._guarded(lambda: self.inv.reservations.record_payment(
                    event_id=event, result=result, reservation_id=rid), crash)

    @rule(n=st.integers(0, 3), crash=CRASH)
    def release(self, n: int, crash: int | None) -> None:
        if self.ids:
            self._guarded(lambda: self.inv.reservations.release(self._pick(n)), crash)

    @rule(seconds=st.integers(1, 40))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(crash=CRASH)
    def sweep(self, crash: int | None) -> None:
        self._guarded(self.inv.reservations.expire_due, crash)

    def _pick(self, n: int) -> str:
        """One of the newest reservations (old ones are mostly over: operations on them do little)."""
        return self.ids[-1 - n % min(len(self.ids), 4)]

    @invariant()
    def every_sku_balances(self) -> None:
        for sku in self.skus:
            level = stock(self.inv, sku)
            assert level.available + level.held + level.sold == level.total == STOCK, level
            assert min(level.available, level.held, level.sold) >= 0, level

    @invariant()
    def every_hold_that_can_expire_is_listed(self) -> None:
        assert_holds_listed(self.inv, self.skus)

    def teardown(self) -> None:
        try:
            self.settle_and_check()
        finally:
            delete_prefix(self.client, self.prefix)
            delete_test_clocks(self.client, self.prefix)

    def settle_and_check(self) -> None:
        """Past every hold and pin, the sweeper finishes everything; parts agree with homes; sold is exact."""
        for _ in range(3):
            self.clock.advance(4000)
            self.inv.reservations.expire_due()
        now = self.clock.now_ms()

        def seen(r: dict[str, str]) -> str:
            """The status a reader sees: a hold past its expiry is expired (the sweeper gives back its
            units per SKU and leaves the record as it was)."""
            return "expired" if r["st"] == "held" and int(r["exp"]) <= now else r["st"]

        sold = {sku: 0 for sku in self.skus}
        for rid in set(self.ids):
            token = rid[2:]
            home = self.inv.keys.of_token(token)
            record = self.inv.reservations.calls.read(home, token)
            parts = [self.inv.reservations.calls.read(self.inv.keys.parts[q], token) for q in other_parts(record)]
            for part in parts:
                if not part:
                    continue
                assert seen(part) != "held", (record, part)
                assert ("co" in part) == ("co" in record) or part["st"] != "pending_payment", (record, part)
                assert (seen(part) in STANDING) == (seen(record) in STANDING), (record, part)
            if seen(record) in STANDING:
                for r in [record, *parts]:
                    for field, qty in r.items():
                        if field.startswith("l:"):
                            sold[field[2:]] += int(qty)
        for sku in self.skus:
            level = stock(self.inv, sku)
            assert level.held == 0 and level.sold == sold[sku], (sku, level, sold)


def test_baskets_across_partitions_survive_crashes_at_every_step(any_redis: Any, request: pytest.FixtureRequest,
                                                                 key_prefix: str) -> None:
    """On fakeredis, redis-server and the 3-master cluster (there the four partitions' parts live on
    different masters)."""
    Baskets.client, Baskets.prefix = any_redis, key_prefix
    fake = request.node.callspec.params["any_redis"] == "fakeredis"
    run_state_machine_as_test(Baskets, settings=settings(
        max_examples=100 if fake else 20, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))


def test_the_machine_catches_a_part_left_behind(key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: if parts stopped following their home, the settle check fails."""
    Baskets.client, Baskets.prefix = fakeredis.FakeRedis(server=fakeredis.FakeServer()), key_prefix
    monkeypatch.setattr("inventory.multipart.MultiPart._follow", lambda *a, **k: None)
    machine = Baskets()
    machine.reserve("u1", [0, 2, 3], 1, 30, None)
    machine.checkout(0, None)
    machine.pay(0, "failed", True, None)
    with pytest.raises(AssertionError):
        machine.settle_and_check()



def test_an_amend_meeting_a_crashed_checkouts_pinned_part_leaves_it_pinned(any_redis: Any, key_prefix: str) -> None:
    """The case the state machine found (12-04): a checkout killed after pinning a part and committing the
    home; an amend then re-held the pinned part at its old expiry, the part expired, and the sweeper
    could no longer check it out to follow its home. A pinned part now refuses amends (checking_out)."""
    Baskets.client, Baskets.prefix = any_redis, key_prefix
    machine = Baskets()
    try:
        machine.two_baskets(checked_out=False)
        machine.checkout(crash=2, n=1)
        machine.amend(crash=None, n=1, picks={2: 2})
        machine.every_sku_balances()
        machine.every_hold_that_can_expire_is_listed()
    finally:
        machine.teardown()  # the sweeper settles everything; parts agree with homes; sold is exact
