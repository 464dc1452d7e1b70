"""Model-based test with several actors on real redis-server: Hypothesis picks the interleaving.

Three API hosts, a sweeper, an admin and a reconciler each have their own core (own client objects and
scripts) on one Redis and one clock. Every host operation is split where it really splits: the
host reads what it needs and builds the script's arguments (begin), then, at a point Hypothesis
chooses, after other actors ran and time passed, the script runs (proceed). After every step the
counters, per-user counts, holds and statuses in Redis must equal a plain model of the rules, and
reconciliation against the persisted outbox (SQLite) must find nothing to repair. The clock may
also step back a little, as Redis's TIME does after a failover to a replica whose clock lags.

Hypothesis replays a failing example while shrinking and once more to report it, so one example must
run the same way every time: reservation tokens come from a counter (real ones carry wall-clock ms
and random bits, which order equal-score zset members differently on each run), every example uses
the same key prefix (cleaned before and after) and a fresh copy of one migrated SQLite file, and
a host call is handed to the first idle host rather than a drawn one (hosts are interchangeable).
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from inventory import Inventory, Settings, ids
from inventory.buyers import read_buyers
from inventory.errors import InventoryError
from inventory.holds import read_open_holds
from inventory.persistence import drain_once
from inventory.reconcile import run_reconciliation
from inventory.sale_admin import set_global_pause
from tests.clocks import ManualClock
from tests.conftest import delete_prefix
from tests.helpers import assert_holds_listed, record as stored_record
from tests.model import LIGHT_HOLDS, Model, P, bucket_of

SKUS = ["A", "B", "C"]
USERS = ["u1", "u2", "u3"]
EVENTS = ["e1", "e2"]
HOSTS = ["host1", "host2", "host3"]
_WAIT_S = 20


class SerialTokens:
    """Stands in for ids.new_token: same format, numbered per example, so a replay gets the same tokens."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._serial = itertools.count(1)
        self.issued = 0

    def __call__(self) -> str:
        # Only one core call runs at a time (the others wait at a gate), so no lock is needed.
        self.issued = next(self._serial)
        return f"{self.issued:09d}{0:012d}"

    def peek(self) -> str:
        """The token the next call will get (for a reserve the model must know, even when refused)."""
        return f"{self.issued + 1:09d}{0:012d}"


TOKENS = SerialTokens()


class Aborted(Exception):
    """Raised inside a gated call when the test ends while the call waits."""


class Host:
    """One API process: its core calls run on a thread that stops just before each script is sent."""

    def __init__(self, inv: Inventory, clock: ManualClock) -> None:
        self.inv, self.clock = inv, clock
        self._send = inv.ctx.scripts.call
        inv.ctx.scripts.call = self._gated  # type: ignore[method-assign]
        self._go, self._stopped = threading.Semaphore(0), threading.Semaphore(0)
        self.state = "idle"  # idle | waiting (arguments built, script not sent) | done
        self.abort = False
        self.sweeping = False
        self.ran_at = 0
        self.outcome: tuple[str, Any] = ("", None)
        self.apply: Callable[[str, Any, int], None] = lambda *_: None

    def _gated(self, name: str, keys: Any, args: Any, client: Any = None) -> Any:
        # A reserve refused while a busy SKU had holds due in other hold buckets sweeps the SKU and tries
        # again (inventory/part_calls.py): those calls follow the refusal at once, as one step.
        self.sweeping = self.sweeping or name == "sweep_holds"
        if self.sweeping:
            return self._send(name, keys, args, client)
        self.state = "waiting"
        self._stopped.release()
        self._go.acquire()
        if self.abort:
            raise Aborted()
        self.ran_at = self.clock.now_ms()
        return self._send(name, keys, args, client)

    def begin(self, call: Callable[[], Any], apply: Callable[[str, Any, int], None], *, run_now: bool) -> None:
        """Start a core call; returns once it waits at its first script (or finished without one).

        With run_now, the script is sent at once (and any retry after a stale read too).
        """
        self.apply, self.state, self.ran_at = apply, "running", self.clock.now_ms()
        self.sweeping = False

        def body() -> None:
            try:
                self.outcome = ("ok", call())
            except InventoryError as error:
                self.outcome = (error.code, error)
            except Aborted:
                self.outcome = ("aborted", None)
            except BaseException as error:  # noqa: BLE001 - surfaced by the main thread
                self.outcome = ("crash", error)
            self.state = "done"
            self._stopped.release()

        threading.Thread(target=body, daemon=True).start()
        self._wait()
        while run_now and self.state == "waiting":
            self.proceed()

    def proceed(self) -> None:
        """Send the waiting script; returns when the call waits at its next script or finished."""
        self._go.release()
        self._wait()

    def _wait(self) -> None:
        assert self._stopped.acquire(timeout=_WAIT_S), "a core call neither reached a script nor finished"
        if self.state == "done":
            code, value = self.outcome
            assert code != "crash", repr(value)
            self.state = "idle"
            self.apply(code, value, self.ran_at)

    def stop(self) -> None:
        if self.state == "waiting":
            self.abort = True
            self._go.release()
            self._stopped.acquire(timeout=_WAIT_S)


# "C" is unknown until an admin creates it: asked for now and then, not in most baskets (a basket
# naming it is refused whole, and refused baskets test little).
sku_choice = st.sampled_from(["A"] * 6 + ["B"] * 6 + ["C"])
lines_strategy = st.dictionaries(sku_choice, st.integers(1, 3), min_size=1, max_size=3)
# Short holds often, so reservations reach their expiry while still held (where the races are).
ttls = st.one_of(st.integers(1, 3), st.integers(1, 30))
baskets = st.tuples(st.sampled_from(USERS), lines_strategy, ttls)
# One argument, not four: Hypothesis orders rules by argument count and draws the first ones far more
# often; reserving is what every other host call needs.
reserve_calls = st.tuples(baskets, st.booleans())  # (basket, whether the script runs at once)
# A paused SKU refuses every reservation until resumed: pausing is the rarer change.
product_changes = st.sampled_from(["pause", "resume", "resume", "limit 0", "limit 2", "limit 4",
                                   "pause all", "resume all", "resume all"])
# Time passes in ms steps around expiries (0, 1, 999 ms) and in seconds across them.
time_steps = st.one_of(st.sampled_from([0, 1, 999, 1000]), st.integers(0, 40_000))
# Redis's TIME can step back: a failover to a replica whose clock lags, an NTP correction.
steps_back = st.sampled_from([1, 1, 2, 999, 1000])


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database (the backup API also takes what is still in the WAL)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


class Interleavings(RuleBasedStateMachine):
    client: ClassVar[redis.Redis]
    prefix: ClassVar[str]  # one per test run: same key names (and script sources) in every example
    database: ClassVar[Path]  # migrated once; each example that persists works on a fresh copy

    def __init__(self) -> None:
        super().__init__()
        TOKENS.reset()
        # Keys an example left behind (its teardown cut short) must not leak into this one.
        delete_prefix(self.client, self.prefix)
        self.clock = ManualClock()
        self.clock_high = self.clock.now_ms()  # latest time so far: holds are reclaimed only up to it
        config = Settings(key_prefix=self.prefix)
        self.hosts = {name: Host(Inventory(self.client, config, self.clock), self.clock) for name in HOSTS}
        self.admin = Inventory(self.client, config, self.clock)  # also the sweeper and the reconciler
        self.model = Model()
        self.ids: list[str] = []
        self.engine: Any = None
        self.sessions: Any = None
        for sku in SKUS[:2]:  # "C" stays unknown until an admin creates it
            self._create(sku, 6, limit=4 if sku == "A" else 0)
        self._make_busy("B")

    def _make_busy(self, sku: str) -> None:
        """17 holds taken and given back: from now on the SKU's holds live in hold buckets, where a call's
        lazy expiry reaches only its own reservation's bucket (lua/includes/common.lua, hold_put)."""
        units = self.model.products[sku].total
        self.admin.catalog.adjust_stock(sku, set_total=units + LIGHT_HOLDS + 1)
        crowd = [self.admin.reservations.reserve(f"crowd{n}", {sku: 1}) for n in range(LIGHT_HOLDS + 1)]
        for held in crowd:
            self.admin.reservations.release(held.id)
        self.admin.catalog.adjust_stock(sku, set_total=units)
        self.model.products[sku].busy = True

    def _create(self, sku: str, units: int, limit: int = 0) -> None:
        self.admin.catalog.configure(sku, name=sku, price=100, per_user_limit=limit)
        self.admin.catalog.adjust_stock(sku, set_total=units)
        self.model.products[sku] = P(units, units, 0, 0, limit)

    def _check(self, expected: str, actual: str) -> None:
        # A call whose lines kept changing under it gives up with stale_read: no effect, any model.
        if actual != "stale_read":
            assert actual == expected

    # -- host operations: begin (read, build arguments) ... proceed (the script runs) -------------

    def _idle(self) -> Host:
        # Hosts are interchangeable; a drawn one would change meaning whenever shrinking drops a step.
        return next(h for h in self.hosts.values() if h.state == "idle")

    def _torn(self) -> list[str]:
        """Reservations whose record says 'held' while some of their holds were reclaimed."""
        return [rid for rid, r in self.model.res.items() if r.status == "held" and r.live != set(r.lines)]

    def _reservation(self, data: st.DataObject) -> str:
        # Races cluster at an expiry and where a hold was reclaimed under a record still 'held', so
        # most draws take such a reservation. The kind is drawn the same way whatever the state, so
        # shrinking (which replays choices against a changed state) keeps the rest of the example.
        kind = data.draw(st.sampled_from(["nearest expiry", "any", "torn"]), label="pick")
        now = self.clock.now_ms()
        if kind == "any":
            return data.draw(st.sampled_from(self.ids), label="reservation")
        torn = self._torn()
        if kind == "torn" and torn:
            return torn[-1]
        return min(self.ids, key=lambda rid: abs(self.model.res[rid].exp - now))

    @staticmethod
    def _run_now(data: st.DataObject) -> bool:
        return data.draw(st.booleans(), label="script runs at once")

    def _any_idle(self) -> bool:
        return any(h.state == "idle" for h in self.hosts.values())

    def _can_act(self) -> bool:
        return bool(self.ids) and self._any_idle()

    def _reserve(self, basket: tuple[str, dict[str, int], int], *, run_now: bool) -> None:
        user, lines, ttl = basket
        host = self._idle()

        keys = self.admin.keys  # the attempt's id picks its hold buckets, even when it is refused
        rid = ids.reservation_id(keys.token_in(TOKENS.peek(), keys.partition_of(min(lines))))

        def apply(code: str, value: Any, now: int) -> None:
            assert code != "ok" or value.id == rid
            self._check(self.model.reserve(rid, user, lines, now + ttl * 1000, now), code)
            if code == "ok":
                self.ids.append(rid)

        host.begin(lambda: host.inv.reservations.reserve(user, lines, ttl_seconds=ttl), apply, run_now=run_now)

    @initialize(first=baskets, second=baskets)
    def two_first_reservations(self, first: tuple[str, dict[str, int], int],
                               second: tuple[str, dict[str, int], int]) -> None:
        # Amend, release, checkout and payment need reservations: every example starts with two.
        self._reserve(first, run_now=True)
        self._reserve(second, run_now=True)

    @precondition(_any_idle)
    @rule(call=reserve_calls)
    def begin_reserve(self, call: tuple[tuple[str, dict[str, int], int], bool]) -> None:
        basket, run_now = call
        self._reserve(basket, run_now=run_now)

    @precondition(_can_act)
    @rule(data=st.data(), changes=st.dictionaries(sku_choice, st.integers(0, 3), min_size=1))
    def begin_amend(self, data: st.DataObject, changes: dict[str, int]) -> None:
        host = self._idle()
        rid = self._reservation(data)
        owner = self.model.res[rid].user
        host.begin(lambda: host.inv.reservations.amend(rid, changes, user_id=owner),
                   lambda code, _, now: self._check(self.model.amend(rid, changes, now), code),
                   run_now=self._run_now(data))

    @precondition(_can_act)
    @rule(data=st.data())
    def begin_release(self, data: st.DataObject) -> None:
        host = self._idle()
        rid = self._reservation(data)
        host.begin(lambda: host.inv.reservations.release(rid),
                   lambda code, _, now: self._check(self.model.release(rid, now), code), run_now=self._run_now(data))

    @precondition(_can_act)
    @rule(data=st.data())
    def begin_checkout(self, data: st.DataObject) -> None:
        self._checkout(self._reservation(data), run_now=self._run_now(data))

    def _checkout(self, rid: str, *, run_now: bool) -> None:
        host = self._idle()
        host.begin(lambda: host.inv.reservations.checkout(rid),
                   lambda code, _, now: self._check(self.model.checkout(rid, now), code), run_now=run_now)

    @precondition(_can_act)
    @rule(data=st.data(), event=st.sampled_from(EVENTS), result=st.sampled_from(["paid", "failed"]))
    def begin_payment(self, data: st.DataObject, event: str, result: str) -> None:
        host = self._idle()
        rid = self._reservation(data)
        host.begin(lambda: host.inv.reservations.record_payment(event_id=event, result=result, reservation_id=rid),
                   lambda code, _, now: self._check(self.model.pay(rid, event, result, now), code),
                   run_now=self._run_now(data))

    @precondition(lambda self: any(h.state == "waiting" for h in self.hosts.values()))
    @rule(data=st.data())
    def proceed(self, data: st.DataObject) -> None:
        waiting = [h for h in HOSTS if self.hosts[h].state == "waiting"]
        self.hosts[data.draw(st.sampled_from(waiting), label="host")].proceed()

    # -- the rest of the world: time, the sweeper, admins, persistence + reconciliation ---------

    def _set_time(self, now_ms: int) -> None:
        self.clock.set_ms(now_ms)
        self.clock_high = max(self.clock_high, now_ms)

    @rule(ms=time_steps)
    def time_passes(self, ms: int) -> None:
        self._set_time(self.clock.now_ms() + ms)

    def _expiries_ahead(self) -> list[int]:
        now = self.clock.now_ms()
        return sorted({r.exp for r in self.model.res.values() if r.status == "held" and r.exp + 1 > now})

    @precondition(lambda self: bool(self._expiries_ahead()))
    @rule(data=st.data())
    def time_reaches_an_expiry(self, data: st.DataObject) -> None:
        # Bugs at expiry live within a ms of it; random steps of up to 40 s rarely land there.
        expiry = data.draw(st.sampled_from(self._expiries_ahead()), label="expiry")
        offset = data.draw(st.sampled_from([0, 0, 1, -1]), label="ms after it")
        self._set_time(max(self.clock.now_ms(), expiry + offset))

    @rule(data=st.data(), ms=steps_back)
    def clock_steps_back(self, data: st.DataObject, ms: int) -> None:
        # After a hold was reclaimed at its expiry, a lagging clock makes the reservation look open
        # again: only the check that every hold is still in its index stops a sale of reclaimed stock.
        kind = data.draw(st.sampled_from(["by ms", "before a torn expiry", "before a passed expiry"]), label="back")
        now = self.clock.now_ms()
        passed = sorted({r.exp for r in self.model.res.values() if r.status == "held" and r.exp <= now})
        torn = [self.model.res[rid].exp for rid in self._torn() if self.model.res[rid].exp <= now]
        if kind == "before a torn expiry" and torn:
            self._set_time(torn[-1] - 1)
        elif kind == "before a passed expiry" and passed:
            self._set_time(passed[-1] - 1)
        else:
            self._set_time(now - ms)

    def _due(self) -> bool:
        now = self.clock.now_ms()
        return any(r.status == "held" and r.exp <= now for r in self.model.res.values())

    @precondition(_due)  # with nothing due a sweep changes nothing
    @rule()
    def sweeper_runs(self) -> None:
        self.admin.reservations.expire_due(batch_size=2)
        self.model.sweep(self.clock.now_ms())

    @rule(sku=st.sampled_from(SKUS), mode=st.sampled_from(["set", "add"]), units=st.integers(-4, 8))
    def admin_adjusts_stock(self, sku: str, mode: str, units: int) -> None:
        units = abs(units) if mode == "set" else units
        kwargs = {"set_total": units} if mode == "set" else {"add": units}
        try:
            self.admin.catalog.adjust_stock(sku, **kwargs)
            actual = "ok"
        except InventoryError as error:
            actual = error.code
        assert actual == self.model.adjust(sku, mode, units)

    @rule(sku=st.sampled_from(SKUS), change=product_changes)
    def admin_changes_a_product(self, sku: str, change: str) -> None:
        if change.endswith(" all"):
            self.model.all_paused = change == "pause all"
            set_global_pause(self.admin, self.model.all_paused)
            return
        if sku not in self.model.products:
            self._create(sku, 3)
            return
        p = self.model.products[sku]
        if change in ("pause", "resume"):
            p.paused = change == "pause"
            self.admin.catalog.configure(sku, paused=p.paused)
        else:
            p.limit = int(change.split()[1])
            self.admin.catalog.configure(sku, per_user_limit=p.limit)

    def _example_database(self) -> Path:
        return self.database.with_name("example.db")

    def _unpersisted(self) -> bool:
        # With no outbox entry and no dirty SKU, drain and reconcile have nothing to look at.
        return any(self.client.xlen(part.outbox) or self.client.scard(part.dirty) for part in self.admin.keys.parts)

    @precondition(_unpersisted)
    @rule()
    def persist_and_reconcile(self) -> None:
        if self.sessions is None:
            from inventory.db import make_engine, make_session_factory

            copy_database(self.database, self._example_database())  # migrating each time cost 0.13 s
            self.engine = make_engine(f"sqlite:///{self._example_database()}")
            self.sessions = make_session_factory(self.engine)
        drain_once(self.admin, self.sessions, claim_idle_ms=0)
        report = run_reconciliation(self.admin, self.sessions, repair=True)
        assert not report.drifts, report.drifts

    # -- after every step -------------------------------------------------------------------------

    @invariant()
    def counters_and_buyers_equal_the_model(self) -> None:
        for sku, p in self.model.products.items():
            level = self.admin.catalog.get(sku).stock
            assert (level.total, level.available, level.held, level.sold) == (p.total, p.avail, p.held, p.sold)
            assert level.available + level.held + level.sold == level.total
            assert min(level.available, level.held, level.sold) >= 0
            buyers = read_buyers(self.client, self.admin.keys.sku(sku))
            assert buyers == {u: n for (s, u), n in self.model.buyers.items() if s == sku and n}

    @invariant()
    def every_hold_that_can_expire_is_listed(self) -> None:
        assert_holds_listed(self.admin, [sku for sku in SKUS if sku in self.model.products])

    @invariant()
    def every_hold_is_backed_by_its_record_and_statuses_agree(self) -> None:
        now = self.clock.now_ms()
        records = {rid: stored_record(self.admin, rid) for rid in self.ids}
        for sku in self.model.products:
            for token, qty, user, _ in read_open_holds(self.client, self.admin.keys.sku(sku)):
                record = records[f"r_{token}"]
                assert record["st"] == "held" and record["u"] == user and record[f"l:{sku}"] == str(qty), record
        for rid, r in self.model.res.items():
            assert self.admin.reservations.get(rid).status.value == self.model.shown_status(rid, now)
            assert records[rid]["st"] == r.status
            # Until the clock has reached its expiry no hold of it can have been reclaimed (it may
            # have been, then the clock stepped back).
            if r.status == "held" and self.clock_high < r.exp:
                assert r.live == set(r.lines)

    def teardown(self) -> None:
        for host in self.hosts.values():
            host.stop()
        delete_prefix(self.client, self.prefix)
        for key in self.admin.keys.test_clocks:  # one per partition, each in its own slot
            self.client.delete(key)
        if self.engine is not None:  # else thousands of shrinking runs leak open files
            self.engine.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self._example_database()}{suffix}").unlink(missing_ok=True)


def prepare(client: redis.Redis, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Class-wide wiring of the machine: Redis, key prefix, migrated database, numbered tokens."""
    from inventory.migrations import upgrade

    Interleavings.client, Interleavings.prefix = client, prefix
    Interleavings.database = tmp_path / "migrated.db"
    upgrade(f"sqlite:///{Interleavings.database}")
    monkeypatch.setattr(ids, "new_token", TOKENS)


def test_checkout_after_a_reclaim_and_a_clock_step_back_expires_instead_of_selling(
        real_redis: redis.Redis, key_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hold reclaimed at its expiry, then the clock 1 ms back: checkout must see the hold gone."""
    # Five exact steps that the random search reaches only now and then; pinned so it always runs.
    prepare(real_redis, key_prefix, tmp_path, monkeypatch)
    machine = Interleavings()
    try:
        machine._reserve(("u1", {"A": 1}, 1), run_now=True)
        first = machine.ids[0]
        machine._set_time(machine.model.res[first].exp)
        machine._reserve(("u2", {"A": 1}, 5), run_now=True)  # lazy expiry reclaims the first hold
        machine._set_time(machine.clock.now_ms() - 1)  # e.g. a failover to a replica 1 ms behind
        machine._checkout(first, run_now=True)
        machine.counters_and_buyers_equal_the_model()
        machine.every_hold_is_backed_by_its_record_and_statuses_agree()
        assert machine.model.res[first].status == "expired"
    finally:
        machine.teardown()


def test_a_reserve_refused_while_other_hold_buckets_have_units_due_sweeps_and_gets_them(
        real_redis: redis.Redis, key_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the busy SKU a reserve's lazy expiry reaches only its own hold bucket: refused while another
    bucket holds due units, the host sweeps the SKU and tries again in the same step, as the model says."""
    prepare(real_redis, key_prefix, tmp_path, monkeypatch)
    machine = Interleavings()
    try:
        machine._reserve(("u1", {"B": 3}, 1), run_now=True)
        machine._reserve(("u2", {"B": 3}, 30), run_now=True)  # B sold out
        first = machine.ids[0]
        machine._set_time(machine.model.res[first].exp)  # u1's 3 units are due, in u1's bucket
        machine._reserve(("u3", {"B": 2}, 5), run_now=True)
        machine.counters_and_buyers_equal_the_model()
        machine.every_hold_is_backed_by_its_record_and_statuses_agree()
        assert len(machine.ids) == 3 and bucket_of(first) != bucket_of(machine.ids[2])  # held, by the retry
    finally:
        machine.teardown()


@pytest.mark.slow
@pytest.mark.single_node("100 random 60-step runs take minutes; the cluster runs the same scripts in the other tiers")
def test_interleaved_hosts_sweeper_admin_and_reconcile_match_the_model_on_real_redis(
        real_redis: redis.Redis, key_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare(real_redis, key_prefix, tmp_path, monkeypatch)
    run_state_machine_as_test(
        Interleavings,
        # No explain phase: on Python < 3.12 it line-traces every shrinking run (redis-py, SQLAlchemy
        # included), which made shrinking take over 10 minutes and ran into pytest's timeout.
        settings=settings(max_examples=100, stateful_step_count=60, deadline=None,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )
