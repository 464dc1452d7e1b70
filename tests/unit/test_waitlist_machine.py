"""Waitlists under random interleavings (Hypothesis state machine): first come first served, nothing lost.

Buyers reserve, release and let holds expire; others join, leave, poll, claim and let offers lapse; the
sweeper runs now and then; time jumps by random amounts (Redis's clock, via the test clock). After every
step: available + held + sold == total; held is exactly the holders' units plus offers plus the pool set
aside; nothing is set aside beyond what waiting buyers want; and no buyer still waiting joined before
one who has been offered units (offers go in join order).
"""

from __future__ import annotations

from typing import Any, ClassVar

import fakeredis
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from inventory import Inventory, Settings
from inventory.errors import InventoryError
from inventory.holds import read_open_holds
from tests.clocks import ManualClock
from tests.conftest import delete_prefix
from tests.helpers import make_product, stock

TOTAL, CLAIM = 4, 10
USERS = [f"u{n}" for n in range(8)]


class Queue(RuleBasedStateMachine):
    client: ClassVar[Any]
    prefix: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        delete_prefix(self.client, self.prefix)
        self.clock = ManualClock()
        self.inv = Inventory(self.client, Settings(key_prefix=self.prefix, waitlist_claim_seconds=CLAIM,
                                                   waitlist_ttl_seconds=3600), self.clock)
        make_product(self.inv, "A", stock=TOTAL)
        self.holds: list[str] = []  # reservation ids taken by reserve or claim
        self.joined: dict[str, int] = {}  # user -> join order of their current entry
        self.ever_offered: dict[str, int] = {}  # user -> join order of an entry that was offered units
        self.joins = 0

    # -- buyers -----------------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS), ttl=st.sampled_from([5, 30, 600]))
    def reserve(self, user: str, ttl: int) -> None:
        try:
            self.holds.append(self.inv.reservations.reserve(user, {"A": 1}, ttl_seconds=ttl).id)
        except InventoryError:
            pass

    @rule(pick=st.integers(0, 20))
    def release(self, pick: int) -> None:
        if self.holds:
            self.inv.reservations.release(self.holds[pick % len(self.holds)])

    @rule(user=st.sampled_from(USERS), qty=st.integers(1, 2))
    def join(self, user: str, qty: int) -> None:
        try:
            entry = self.inv.waitlists.join("A", user, qty)
        except InventoryError:
            return
        if not entry.replayed:
            self.joins += 1
            self.joined[user] = self.joins
        self._observe(user, entry.status)

    @rule(user=st.sampled_from(USERS))
    def leave(self, user: str) -> None:
        try:
            self.inv.waitlists.leave("A", user)
        except InventoryError:
            pass
        self.joined.pop(user, None)

    @rule(user=st.sampled_from(USERS))
    def poll(self, user: str) -> None:
        try:
            self._observe(user, self.inv.waitlists.get("A", user).status)
        except InventoryError:
            pass

    @rule(user=st.sampled_from(USERS))
    def claim(self, user: str) -> None:
        try:
            self.holds.append(self.inv.waitlists.claim("A", user).id)
        except InventoryError:
            pass

    # -- time and the sweeper ------------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.001, 1, CLAIM, 31, 700]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        self.inv.sweep()

    # -- checks ------------------------------------------------------------------------------------

    def _observe(self, user: str, status: str) -> None:
        if status in ("offered", "claimed") and user in self.joined:
            self.ever_offered[user] = self.joined[user]

    @invariant()
    def units_are_conserved(self) -> None:
        level = stock(self.inv, "A")
        assert level.available + level.held + level.sold == level.total == TOTAL, level
        assert min(level.available, level.held) >= 0, level
        holds = [hold[:3] for hold in read_open_holds(self.client, self.inv.keys.sku("A"))]
        assert sum(qty for _, qty, _ in holds) == level.held, (holds, level)
        wn, wq, owe = (int(v or 0) for v in self.client.hmget(self.inv.keys.sku("A").stock, "wn", "wq", "owe"))
        pool = sum(qty for token, qty, _ in holds if token == "~wl")
        assert pool == owe and 0 <= owe <= max(wq, 0), (pool, owe, wq)
        assert wn == self.client.zcard(self.inv.keys.sku("A").waitlist)

    @invariant()
    def offers_go_in_join_order(self) -> None:
        keys = self.inv.keys.sku("A")
        for field, value in self.client.hgetall(keys.waitinfo).items():
            field, value = field.decode(), value.decode()
            if field.startswith("u:") and value[:2] in ("o|", "c|"):
                self._observe(field[2:], "offered")
        for raw in self.client.zrange(keys.waitlist, 0, -1):
            order = self.joined.get(raw.decode())
            if order is not None:  # nobody who joined after a still-waiting buyer has been offered units
                assert not [o for o in self.ever_offered.values() if o > order], (raw, order, self.ever_offered)

    @invariant()
    def nothing_set_aside_sits_idle_once_served(self) -> None:
        """Right after a serve with the sale open, set-aside units have all been offered."""
        self.inv.waitlists.serve("A")
        level = stock(self.inv, "A")
        wn, owe = (int(v or 0) for v in self.client.hmget(self.inv.keys.sku("A").stock, "wn", "owe"))
        assert owe == 0, (owe, wn)
        if wn > 0:
            assert level.available == 0, level  # buyers wait: nothing is left for the next request


@pytest.mark.parametrize("backend", ["fakeredis", "redis-server"])
def test_waitlists_serve_in_join_order_and_lose_nothing(backend: str, request: pytest.FixtureRequest,
                                                       key_prefix: str) -> None:
    Queue.client = (fakeredis.FakeRedis(server=fakeredis.FakeServer()) if backend == "fakeredis"
                    else request.getfixturevalue("real_redis"))
    Queue.prefix = key_prefix
    run_state_machine_as_test(Queue, settings=settings(
        max_examples=150 if backend == "fakeredis" else 25, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))


def test_the_machine_catches_an_offer_out_of_turn(key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: offering to the newest buyer instead of the first breaks the order invariant."""
    from inventory import scripts
    original = scripts._splice_includes

    def last_first(source: str, overrides: dict[str, str] | None = None) -> str:
        spliced = original(source, overrides)
        return spliced.replace("redis.call('ZRANGE', queue_key, 0, 0)\n    if #head == 0 then break end",
                               "redis.call('ZRANGE', queue_key, -1, -1)\n    if #head == 0 then break end")

    monkeypatch.setattr(scripts, "_splice_includes", last_first)
    scripts.load_sources.cache_clear()
    scripts.with_clock.cache_clear()
    try:
        Queue.client, Queue.prefix = fakeredis.FakeRedis(server=fakeredis.FakeServer()), key_prefix
        machine = Queue()
        for n in range(TOTAL):
            machine.reserve(f"h{n}", 600)
        machine.join("u1", 1)
        machine.join("u2", 1)
        machine.release(0)
        machine.poll("u2")
        with pytest.raises(AssertionError):
            machine.offers_go_in_join_order()
    finally:
        monkeypatch.undo()
        scripts.load_sources.cache_clear()
        scripts.with_clock.cache_clear()
