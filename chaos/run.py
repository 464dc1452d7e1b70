"""Run one scenario: its own stack, seed, load with the fault, recovery, settling, then every invariant."""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg2

from chaos import invariants as inv_checks
from chaos.client import Client, Witness
from chaos.faults import FaultCtx
from chaos.load import CATALOG, HOLD_TTL_S, LoadSize, run_load, seed
from chaos.scenarios import Scenario
from chaos.stack import KEY_PREFIX, ChaosStack

RECOVERY_BOUND_S = 60.0  # I6: healthy again, without a person, within this long after the fault ends
SETTLE_BOUND_S = 90.0
PROBE_SKU = "PROBE"  # chaos.load.PROBE_CATALOG: never bought by the load


@dataclass
class Outcome:
    """One row of the results."""

    scenario: str
    fault: str
    load: str
    seconds: float
    recovery_s: float | None
    acknowledged: int
    verdicts: list[inv_checks.Verdict]
    notes: dict[str, Any]
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and all(v.ok for v in self.verdicts)


def core_inventory(stack: ChaosStack) -> Any:
    """The domain core on the scenario's Redis (how `flashstock status` reads it)."""
    from inventory.config import Settings
    from inventory.engine import Inventory

    return Inventory(stack.redis_client(), Settings(key_prefix=KEY_PREFIX))


def redis_rows(stack: ChaosStack) -> dict[str, Any] | None:
    """Per SKU total/available/held/sold/state via inventory.sale_status.read_status; None if unreadable."""
    from inventory.sale_status import read_status

    try:
        return {row.sku: row for row in read_status(core_inventory(stack), sorted(CATALOG))}
    except Exception:  # noqa: BLE001 - Redis down, a SKU missing while rebuilt: not readable yet
        return None


def backlog(stack: ChaosStack) -> int:
    from inventory.persistence import outbox_backlog

    try:
        return outbox_backlog(core_inventory(stack))
    except Exception:  # noqa: BLE001
        return -1


def pg_has_order(stack: ChaosStack, order_id: str) -> bool:
    try:
        with psycopg2.connect(stack.pg_dsn(), connect_timeout=3) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM orders WHERE id = %s", (order_id,))
            found = cur.fetchone() is not None
        conn.close()
        return found
    except psycopg2.Error:
        return False


def probe(stack: ChaosStack, client: Client, w: Witness, n: int) -> bool:
    """A fresh buyer's reserve and checkout both answered, and the order reached PostgreSQL (bounded)."""
    user = f"probe{n}"
    held = client.request("probe_reserve", "POST", "/v1/reservations",
                          {"user_id": user, "ttl_seconds": HOLD_TTL_S, "items": [{"sku": PROBE_SKU, "qty": 1}]})
    if held.status != 201 or not held.data:
        return False
    rid = held.data["id"]
    with w.lock:
        w.reservations[rid] = {"user": user, "t": held.t_done}
        w.checkout_tried.add(rid)
    out = client.request("probe_checkout", "POST", f"/v1/reservations/{rid}/checkout", {"user_id": user})
    if out.status != 202 or not out.data:
        return False
    oid = out.data["order_id"]
    with w.lock:
        w.checkouts.setdefault(rid, (oid, out.t_done, out.t_sent))
        w.order_status.setdefault(oid, (out.t_done, out.data["status"], out.t_sent))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if pg_has_order(stack, oid):
            return True
        time.sleep(0.1)
    return False


def await_recovery(stack: ChaosStack, client: Client, w: Witness, since: float) -> float | None:
    """Seconds from `since` until a probe order made it end to end and every SKU reads active."""
    deadline, n = since + RECOVERY_BOUND_S + 30, 0
    while time.time() < deadline:
        rows = redis_rows(stack)
        if rows and all(r.state.value == "active" for r in rows.values()) and probe(stack, client, w, n):
            return time.time() - since
        n += 1
        time.sleep(0.2)
    return None


def settle(stack: ChaosStack) -> bool:
    """After the load: holds expired by the sweeper, outbox drained, Redis and the ledger equal, 3 polls running."""
    from chaos.invariants import read_pg

    deadline, calm = time.monotonic() + SETTLE_BOUND_S, 0
    while time.monotonic() < deadline:
        rows = redis_rows(stack)
        ok = rows is not None and all(r.held == 0 and r.state.value == "active" for r in rows.values()) \
            and backlog(stack) == 0
        if ok:
            pg = read_pg(stack.pg_dsn())
            ok = all(pg.persisted.get(s, (0, 0)) == (r.total, r.sold) for s, r in rows.items())
        calm = calm + 1 if ok else 0
        if calm >= 3:
            return True
        time.sleep(0.5)
    return False


def reconcile_check(stack: ChaosStack) -> dict[str, Any]:
    """A full reconciliation pass with repair disabled (inventory.reconcile), as `flashstock reconcile run`."""
    from inventory.db import make_engine, make_session_factory
    from inventory.reconcile import run_reconciliation

    engine = make_engine(stack.db_url, pool_size=1)
    try:
        report = run_reconciliation(core_inventory(stack), make_session_factory(engine), repair=False, full=True)
    finally:
        engine.dispose()
    return {"clean": report.clean, "skus_checked": report.skus_checked, "skipped": report.skipped,
            "drifts": [f"{d.sku} {d.kind}: {d.detail}" for d in report.drifts]}


def wait_db_follows(stack: ChaosStack, timeout_s: float = 60) -> None:
    """Until a worker's first recovery check made PostgreSQL follow the fresh Redis (sync_state row)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with psycopg2.connect(stack.pg_dsn()) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM sync_state")
            found = cur.fetchone()[0] > 0
        conn.close()
        if found:
            return
        time.sleep(0.2)
    raise TimeoutError("no worker initialised the Redis epoch")


def _supervise(stack: ChaosStack, done: threading.Event) -> None:
    """What the deployment's process supervisor does, twice a second, until the scenario is over."""
    while not done.wait(0.5):
        stack.supervise()


def run_scenario(scn: Scenario, size: LoadSize, run_dir: Path, seed_value: int, *, lean: bool = False) -> Outcome:
    """The whole scenario; the stack is stopped (process groups, proxy, database) whatever happens.

    lean: one gunicorn worker and only the Celery workers the fault needs (still two beats), for smoke runs."""
    t0 = time.time()
    cfg = replace(scn.cfg, workers=scn.min_workers, api_workers=1) if lean else scn.cfg
    stack = ChaosStack(run_dir / scn.name, scn.name, cfg)
    witness, stop, stop_supervising = Witness(), threading.Event(), threading.Event()
    load_s = max(size.seconds, scn.load_s)
    load = f"{size.buyers} buyers x {load_s:.0f} s"
    recovery: dict[str, float | None] = {"s": None}
    ctx: FaultCtx | None = None
    try:
        stack.start()
        threading.Thread(target=_supervise, args=(stack, stop_supervising), daemon=True).start()
        wait_db_follows(stack)
        client = Client(stack.api_ports, stack.secret, witness)
        seed(client)
        if not settle(stack):
            raise RuntimeError("the seeded catalogue never reached PostgreSQL")
        ctx = FaultCtx(stack, client, witness, stop)

        def fault() -> None:
            stop.wait(min(scn.at_s, 0.4 * load_s))  # a short (smoke) load still has the fault in its middle
            if scn.inject is not None:
                scn.inject(ctx)
            recovery["s"] = await_recovery(stack, client, witness, ctx.fault_end or time.time())

        fault_thread = threading.Thread(target=fault, daemon=True)
        fault_thread.start()
        started = time.time()
        run_load(client, LoadSize(size.buyers, load_s, size.think_s, hold_ttl_s=size.hold_ttl_s), seed_value, stop)
        fault_thread.join(RECOVERY_BOUND_S + 150)
        stop.set()
        if scn.after is not None:
            scn.after(ctx)
        settle_from = time.time()
        settled = settle(stack)
        timings = {"start_s": round(started - t0, 1), "load_s": round(settle_from - started, 1),
                   "settle_s": round(time.time() - settle_from, 1)}
        rows = redis_rows(stack) or {}
        pg = inv_checks.read_pg(stack.pg_dsn())
        recon = reconcile_check(stack)
        verdicts = [
            inv_checks.i1_counters(rows, pg, recon),
            inv_checks.i2_no_oversell(rows, pg),
            inv_checks.i3_orders(witness, pg, ctx.loss_window),
            inv_checks.i4_limits(pg),
            inv_checks.i5_answers(witness),
            inv_checks.i6_recovery(recovery["s"], RECOVERY_BOUND_S, stack.crashed(), settled),
        ]
        verdicts += [inv_checks.Verdict(name, ok, {}, [] if ok else [why]) for name, (ok, why) in ctx.checks.items()]
        notes = dict(ctx.notes, timings=timings, check_details={n: why for n, (_, why) in ctx.checks.items()},
                     forged_applied=sorted(e for e in witness.bad_webhooks if e in pg.payments),
                     supervisor_restarts=list(stack.supervised))
        if notes["forged_applied"]:
            verdicts.append(inv_checks.Verdict("S_no_forged_applied", False, {}, notes["forged_applied"]))
        return Outcome(scn.name, scn.fault, load, time.time() - t0, recovery["s"], witness.acknowledged(),
                       verdicts, notes)
    except Exception as error:  # noqa: BLE001 - a harness failure is a failed row, not a crash of the run
        stop.set()
        return Outcome(scn.name, scn.fault, load, time.time() - t0, recovery["s"], witness.acknowledged(), [],
                       ctx.notes if ctx else {}, error=f"{error!r}\n{traceback.format_exc()}")
    finally:
        stop.set()
        stop_supervising.set()
        stack.stop()
