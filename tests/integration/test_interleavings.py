"""Model-based test with several actors on real redis-server: Hypothesis picks the interleaving.

Three API hosts, a sweeper, an admin and a reconciler each have their own core (own client objects and
scripts) on one Redis and one clock. Every host operation is split where it really splits: the
host reads what it needs and builds the script's arguments (begin), then, at a point Hypothesis
chooses, after other actors ran and time passed, the script runs (proceed). After every step the
counters, per-user counts, holds and statuses in Redis must equal a plain model of the rules, and
reconciliation against the persisted outbox (SQLite) must find nothing to repair.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import redis
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from inventory import Inventory, Settings
from inventory.context import decode_hash, text
from inventory.errors import InventoryError
from inventory.persistence import drain_once
from inventory.reconcile import run_reconciliation
from inventory.sale_admin import set_global_pause
from tests.clocks import ManualClock
from tests.conftest import delete_prefix
from tests.model import Model, P

SKUS = ["A", "B", "C"]
USERS = ["u1", "u2", "u3"]
EVENTS = ["e1", "e2"]
HOSTS = ["host1", "host2", "host3"]
_WAIT_S = 20


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
        self.ran_at = 0
        self.outcome: tuple[str, Any] = ("", None)
        self.apply: Callable[[str, Any, int], None] = lambda *_: None

    def _gated(self, name: str, keys: Any, args: Any, client: Any = None) -> Any:
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


# "C" is unknown until an admin creates it: asked for now and then, not in most baskets.
sku_choice = st.sampled_from(["A", "A", "A", "B", "B", "B", "C"])
lines_strategy = st.dictionaries(sku_choice, st.integers(1, 3), min_size=1, max_size=3)
# Time passes in ms steps around expiries (0, 1, 999 ms) and in seconds across them.
time_steps = st.one_of(st.sampled_from([0, 1, 999, 1000]), st.integers(0, 40_000))


class Interleavings(RuleBasedStateMachine):
    client: redis.Redis
    tmp: Path

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"fstest:{uuid.uuid4().hex[:12]}"
        self.clock = ManualClock()
        config = Settings(key_prefix=self.prefix)
        self.hosts = {name: Host(Inventory(self.client, config, self.clock), self.clock) for name in HOSTS}
        self.admin = Inventory(self.client, config, self.clock)  # also the sweeper and the reconciler
        self.model = Model()
        self.ids: list[str] = []
        self.sessions: Any = None
        for sku in SKUS[:2]:  # "C" stays unknown until an admin creates it
            self._create(sku, 6, limit=4 if sku == "A" else 0)

    def _create(self, sku: str, units: int, limit: int = 0) -> None:
        self.admin.catalog.configure(sku, name=sku, price=100, per_user_limit=limit)
        self.admin.catalog.adjust_stock(sku, set_total=units)
        self.model.products[sku] = P(units, units, 0, 0, limit)

    def _check(self, expected: str, actual: str) -> None:
        # A call whose lines kept changing under it gives up with stale_read: no effect, any model.
        if actual != "stale_read":
            assert actual == expected

    # -- host operations: begin (read, build arguments) ... proceed (the script runs) -------------

    def _idle(self, data: st.DataObject) -> Host:
        idle = [h for h in HOSTS if self.hosts[h].state == "idle"]
        return self.hosts[data.draw(st.sampled_from(idle), label="host")]

    @staticmethod
    def _run_now(data: st.DataObject) -> bool:
        return data.draw(st.booleans(), label="script runs at once")

    def _any_idle(self) -> bool:
        return any(h.state == "idle" for h in self.hosts.values())

    def _can_act(self) -> bool:
        return bool(self.ids) and self._any_idle()

    @precondition(_any_idle)
    @rule(data=st.data(), user=st.sampled_from(USERS), lines=lines_strategy, ttl=st.integers(1, 30))
    def begin_reserve(self, data: st.DataObject, user: str, lines: dict[str, int], ttl: int) -> None:
        host = self._idle(data)

        def apply(code: str, value: Any, now: int) -> None:
            rid = value.id if code == "ok" else ""
            self._check(self.model.reserve(rid, user, lines, now + ttl * 1000, now), code)
            if rid:
                self.ids.append(rid)

        host.begin(lambda: host.inv.reservations.reserve(user, lines, ttl_seconds=ttl), apply, run_now=self._run_now(data))

    @precondition(_can_act)
    @rule(data=st.data(), changes=st.dictionaries(sku_choice, st.integers(0, 3), min_size=1))
    def begin_amend(self, data: st.DataObject, changes: dict[str, int]) -> None:
        host = self._idle(data)
        rid = data.draw(st.sampled_from(self.ids), label="reservation")
        owner = self.model.res[rid].user
        host.begin(lambda: host.inv.reservations.amend(rid, changes, user_id=owner),
                   lambda code, _, now: self._check(self.model.amend(rid, changes, now), code), run_now=self._run_now(data))

    @precondition(_can_act)
    @rule(data=st.data())
    def begin_release(self, data: st.DataObject) -> None:
        host = self._idle(data)
        rid = data.draw(st.sampled_from(self.ids), label="reservation")
        host.begin(lambda: host.inv.reservations.release(rid),
                   lambda code, _, now: self._check(self.model.release(rid, now), code), run_now=self._run_now(data))

    @precondition(_can_act)
    @rule(data=st.data())
    def begin_checkout(self, data: st.DataObject) -> None:
        host = self._idle(data)
        rid = data.draw(st.sampled_from(self.ids), label="reservation")
        host.begin(lambda: host.inv.reservations.checkout(rid),
                   lambda code, _, now: self._check(self.model.checkout(rid, now), code), run_now=self._run_now(data))

    @precondition(_can_act)
    @rule(data=st.data(), event=st.sampled_from(EVENTS), result=st.sampled_from(["paid", "failed"]))
    def begin_payment(self, data: st.DataObject, event: str, result: str) -> None:
        host = self._idle(data)
        rid = data.draw(st.sampled_from(self.ids), label="reservation")
        host.begin(lambda: host.inv.reservations.record_payment(event_id=event, result=result, reservation_id=rid),
                   lambda code, _, now: self._check(self.model.pay(rid, event, result, now), code), run_now=self._run_now(data))

    @precondition(lambda self: any(h.state == "waiting" for h in self.hosts.values()))
    @rule(data=st.data())
    def proceed(self, data: st.DataObject) -> None:
        waiting = [h for h in HOSTS if self.hosts[h].state == "waiting"]
        self.hosts[data.draw(st.sampled_from(waiting), label="host")].proceed()

    # -- the rest of the world: time, the sweeper, admins, persistence + reconciliation ---------

    @rule(ms=time_steps)
    def time_passes(self, ms: int) -> None:
        self.clock.advance(ms / 1000)

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

    @rule(sku=st.sampled_from(SKUS), change=st.sampled_from(["pause", "resume", "limit 0", "limit 2", "limit 4",
                                                              "pause all", "resume all"]))
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

    @rule()
    def persist_and_reconcile(self) -> None:
        if self.sessions is None:
            from inventory.db import make_engine, make_session_factory
            from inventory.migrations import upgrade

            url = f"sqlite:///{self.tmp / (self.prefix.replace(':', '_') + '.db')}"
            upgrade(url)
            self.sessions = make_session_factory(make_engine(url))
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
            buyers = {text(k): int(v) for k, v in self.client.hgetall(self.admin.keys.sku(sku).buyers).items()}
            assert buyers == {u: n for (s, u), n in self.model.buyers.items() if s == sku and n}

    @invariant()
    def every_hold_is_backed_by_its_record_and_statuses_agree(self) -> None:
        now = self.clock.now_ms()
        records = {rid: decode_hash(self.client.hgetall(self.admin.keys.reservation(rid[2:]))) for rid in self.ids}
        for sku in self.model.products:
            for member in self.client.zrange(self.admin.keys.sku(sku).holds, 0, -1):
                token, qty, user = text(member).split("|", 2)
                record = records[f"r_{token}"]
                assert record["st"] == "held" and record["u"] == user and record[f"l:{sku}"] == qty, record
        for rid, r in self.model.res.items():
            assert self.admin.reservations.get(rid).status.value == self.model.shown_status(rid, now)
            assert records[rid]["st"] == r.status
            if r.status == "held" and now < r.exp:
                assert r.live == set(r.lines)

    def teardown(self) -> None:
        for host in self.hosts.values():
            host.stop()
        delete_prefix(self.client, self.prefix)
        self.client.delete(self.admin.keys.test_clock)


@pytest.mark.slow
def test_interleaved_hosts_sweeper_admin_and_reconcile_match_the_model_on_real_redis(
        real_redis: redis.Redis, tmp_path: Path) -> None:
    Interleavings.client, Interleavings.tmp = real_redis, tmp_path
    run_state_machine_as_test(
        Interleavings,
        settings=settings(max_examples=100, stateful_step_count=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )
