"""One fault per scenario, injected into a running stack while the load runs; each returns once the fault
itself is over (what a supervisor would do, such as restarting a killed process, is part of it)."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import psutil

from chaos.client import Client, Witness
from chaos.load import HOLD_TTL_S, retry
from chaos.stack import ChaosStack

SUPERVISOR_DELAY_S = 1.0  # systemd's RestartSec / a Kubernetes restart, roughly
TASK_RECEIVED = re.compile(rb"flashstock\.persist_outbox\[([0-9a-f-]{36})\] received")
BEAT_SENDS = b"Sending due task"


@dataclass
class FaultCtx:
    """What a fault can touch, and what it reports."""

    stack: ChaosStack
    client: Client
    witness: Witness
    stop: threading.Event
    notes: dict[str, Any] = field(default_factory=dict)
    loss_window: tuple[float, float] | None = None
    fault_end: float | None = None  # when the fault itself ended; recovery (restarts included) counts from here
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)  # scenario-specific verdicts

    def log(self, name: str) -> bytes:
        path = self.stack.procs.log_dir / f"{name}.log"
        return path.read_bytes() if path.exists() else b""

    def wait(self, seconds: float) -> None:
        self.stop.wait(seconds)


Fault = Callable[[FaultCtx], None]


def redis_kill9(ctx: FaultCtx) -> None:
    ctx.stack.kill9("redis")
    ctx.fault_end = time.time()
    time.sleep(SUPERVISOR_DELAY_S)
    ctx.stack.restart("redis")


def redis_flush(ctx: FaultCtx) -> None:
    # FLUSHALL on the redis-server this scenario started, never on a shared one.
    ctx.stack.redis_client().flushall()
    ctx.fault_end = time.time()
    ctx.loss_window = (0.0, time.time())  # whatever was not yet persisted is lost (docs/sync.md)


def redis_old_snapshot(ctx: FaultCtx) -> None:
    snap = ctx.stack.run_dir / "aof-snapshot"
    ctx.stack.snapshot_redis(snap)
    taken = time.time()
    ctx.wait(6.0)
    ctx.fault_end = time.time()
    ctx.stack.restore_redis(snap)
    ctx.loss_window = (taken, time.time())  # acknowledged after the backup and not yet persisted
    ctx.notes["snapshot_age_s"] = round(time.time() - taken, 1)


def redis_stall(ctx: FaultCtx) -> None:
    ctx.stack.signal("redis", signal.SIGSTOP)
    time.sleep(10.0)
    ctx.stack.signal("redis", signal.SIGCONT)
    ctx.fault_end = time.time()


def worker_kill_mid_batch(ctx: FaultCtx) -> None:
    """kill -9 worker0 the moment its log says a persist task arrived (the batch is being written)."""
    start, deadline = len(ctx.log("worker0")), time.monotonic() + 20
    while time.monotonic() < deadline and not TASK_RECEIVED.search(ctx.log("worker0")[start:]):
        time.sleep(0.01)
    ctx.notes["task_seen_before_kill"] = bool(TASK_RECEIVED.search(ctx.log("worker0")[start:]))
    ctx.stack.kill9("worker0")
    ctx.fault_end = time.time()
    time.sleep(SUPERVISOR_DELAY_S)
    ctx.stack.restart("worker0")


def worker_kill_mid_commit(ctx: FaultCtx, attempts: int = 5) -> None:
    """PostgreSQL commits a batch but its answer is held at the proxy; the committing worker is killed then."""
    assert ctx.stack.proxy is not None
    victim, _ = _hold_a_worker_commit(ctx, attempts)
    ctx.notes["killed"] = victim
    if victim:
        ctx.stack.kill9(victim)
    ctx.fault_end = time.time()
    ctx.stack.proxy.thaw()
    if victim:
        time.sleep(SUPERVISOR_DELAY_S)
        ctx.stack.restart(victim)
    ctx.checks["S_commit_window_hit"] = (victim is not None, f"held COMMIT answers went to "
                                                             f"{ctx.notes['held_commit_owners']}; killed {victim}")


def pg_unreachable(ctx: FaultCtx) -> None:
    proxy = ctx.stack.proxy
    assert proxy is not None
    proxy.cut()
    time.sleep(30.0)
    proxy.restore()
    ctx.fault_end = time.time()


def outlive_visibility(ctx: FaultCtx, attempts: int = 5) -> None:
    """A worker's pool child frozen mid-task (its COMMIT answer held, then SIGSTOP), unacknowledged, past the
    10 s visibility timeout; the other worker is restarted (a rolling deploy): a fresh consumer scans for
    overdue tasks at once and runs the task again while the first still holds it."""
    assert ctx.stack.proxy is not None
    name, pid = _hold_a_worker_commit(ctx, attempts, in_child=True)
    if name is None or pid is None:
        ctx.stack.proxy.thaw()
        ctx.checks["S_task_redelivered"] = (False, f"no worker's COMMIT held: {ctx.notes['held_commit_owners']}")
        return
    found = TASK_RECEIVED.findall(ctx.log(name))
    task = found[-1] if found else b"-"  # the child runs the task its main process received last
    os.kill(pid, signal.SIGSTOP)
    ctx.stack.proxy.thaw()  # the answer waits in the frozen child's socket
    frozen_at = time.time()
    time.sleep(ctx.stack.cfg.visibility_timeout_s + 2)
    other = "worker1" if name == "worker0" else "worker0"
    ctx.stack.stop_one(other)  # kombu scans for overdue tasks only every ~100 s, and once at start
    ctx.stack.restart(other)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and task not in ctx.log(other):
        time.sleep(0.2)
    os.kill(pid, signal.SIGCONT)
    ctx.fault_end = time.time()
    time.sleep(3.0)
    again = task in ctx.log(other)
    ctx.notes.update(frozen_worker=name, frozen_task=task.decode(), frozen_s=round(time.time() - frozen_at, 1),
                     redelivered=again)
    ctx.checks["S_task_redelivered"] = (again, f"task {task.decode()} frozen {ctx.notes['frozen_s']} s in {name}'s "
                                               f"pool child, {'also run' if again else 'not run'} by {other}")


def beat_leader_kill(ctx: FaultCtx) -> None:
    """kill -9 the beat that is sending; the standby must take over (redbeat lock expiry) by itself."""
    sizes = {n: len(ctx.log(n)) for n in ("beat0", "beat1")}
    time.sleep(3.0)
    senders = [n for n in sizes if ctx.log(n)[sizes[n]:].count(BEAT_SENDS)]
    leader = senders[0] if len(senders) == 1 else None
    ctx.checks["S_one_leader"] = (len(senders) == 1, f"beats sending in a 3 s window: {senders}")
    if leader is None:
        return
    standby = "beat1" if leader == "beat0" else "beat0"
    ctx.stack.kill9(leader)
    ctx.fault_end = time.time()
    killed, mark = time.time(), len(ctx.log(standby))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and BEAT_SENDS not in ctx.log(standby)[mark:]:
        time.sleep(0.2)
    took_over = BEAT_SENDS in ctx.log(standby)[mark:]
    ctx.notes.update(leader=leader, takeover_s=round(time.time() - killed, 1) if took_over else None)
    ctx.checks["S_standby_took_over"] = (took_over, f"{standby} sending {ctx.notes['takeover_s']} s after the kill")
    ctx.stack.restart(leader, wait=False)  # back as the standby, as a supervisor would restart it


def api_worker_kill(ctx: FaultCtx) -> None:
    """kill -9 a gunicorn worker three times, mid-request; the gunicorn master forks new ones."""
    killed = []
    for _ in range(3):
        pids = ctx.stack.children("api0")
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        ctx.fault_end = time.time()
        time.sleep(1.5)
    ctx.notes["gunicorn_workers_killed"] = len(killed)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(ctx.stack.children("api0")) < ctx.stack.cfg.api_workers:
        time.sleep(0.2)


def keyed_burst(ctx: FaultCtx, rounds: int = 12) -> None:
    """10 identical keyed reserves and checkouts at once, then the same keys with other bodies (must be 422)."""
    c, w = ctx.client, ctx.witness
    with concurrent.futures.ThreadPoolExecutor(max_workers=13) as pool:
        for i in range(rounds):
            if ctx.stop.is_set():
                break
            user, key = f"burst{i}", uuid.uuid4().hex
            body = {"user_id": user, "ttl_seconds": HOLD_TTL_S, "items": [{"sku": "CAP", "qty": 1}]}
            hdr = {"Idempotency-Key": key}
            res = list(pool.map(lambda _: retry(lambda: c.request("burst_reserve", "POST", "/v1/reservations", body,
                                                                  headers=hdr)), range(10)))
            ids = {a.data["id"] for a in res if a.status == 201 and a.data}
            with w.lock:
                w.keyed.setdefault(f"{user}:{key}", set()).update(ids)
            if len(ids) != 1:
                continue
            rid = ids.pop()
            with w.lock:
                w.reservations[rid] = {"user": user, "t": time.time()}
                w.checkout_tried.add(rid)
            other = dict(body, items=[{"sku": "TEE", "qty": 1}])
            list(pool.map(lambda _: c.request("burst_reserve_other", "POST", "/v1/reservations", other,
                                              headers=hdr, expect="idempotency_key_reused"), range(3)))
            ck = uuid.uuid4().hex
            path = f"/v1/reservations/{rid}/checkout"
            outs = list(pool.map(lambda _: retry(lambda: c.request("burst_checkout", "POST", path, {"user_id": user},
                                                                   headers={"Idempotency-Key": ck})), range(10)))
            oids = {a.data["order_id"] for a in outs if a.status == 202 and a.data}
            with w.lock:
                w.keyed.setdefault(f"{user}:{ck}", set()).update(oids)
                for a in outs:
                    if a.status == 202 and a.data:
                        w.checkouts.setdefault(rid, (a.data["order_id"], a.t_done, a.t_sent))
                        w.order_status.setdefault(a.data["order_id"], (a.t_done, a.data["status"], a.t_sent))
            list(pool.map(lambda _: c.request("burst_checkout_other", "POST", f"/v1/reservations/r_other{i}/checkout",
                                              {"user_id": user}, headers={"Idempotency-Key": ck},
                                              expect="idempotency_key_reused"), range(3)))
    ctx.notes["burst_rounds"] = rounds


def webhook_abuse(ctx: FaultCtx, rounds: int = 10) -> None:
    """Forged, stale, future-dated, replayed and re-used-id webhooks next to the honest ones."""
    c, w = ctx.client, ctx.witness
    for i in range(rounds):
        if ctx.stop.is_set():
            break
        user = f"hook{i}"
        body = {"user_id": user, "ttl_seconds": HOLD_TTL_S, "items": [{"sku": "CAP", "qty": 1}]}
        held = retry(lambda: c.request("reserve", "POST", "/v1/reservations", body))
        if held.status != 201 or not held.data:
            continue
        rid = held.data["id"]
        with w.lock:
            w.checkout_tried.add(rid)
        out = retry(lambda: c.request("checkout", "POST", f"/v1/reservations/{rid}/checkout", {"user_id": user}))
        if out.status != 202 or not out.data:
            continue
        oid = out.data["order_id"]
        with w.lock:
            w.checkouts.setdefault(rid, (oid, out.t_done, out.t_sent))
            w.order_status[oid] = (out.t_done, "pending_payment", out.t_sent)
        for label, at, forge in (("forged", None, True), ("stale", time.time() - 600, False),
                                 ("future", time.time() + 600, False)):
            event = f"bad-{label}-{uuid.uuid4().hex}"
            with w.lock:
                w.bad_webhooks.add(event)
            c.webhook(f"webhook_{label}", {"event_id": event, "order_id": oid, "status": "paid"},
                      msg_id=f"msg-{event}", at=at, forge=forge, expect="invalid_signature")
        event = f"ev-{uuid.uuid4().hex}"
        body = {"event_id": event, "order_id": oid, "status": "paid"}
        raw, headers = c.signed(body, msg_id=f"msg-{event}")
        first = retry(lambda: c.request("webhook", "POST", "/v1/payments/webhook", raw=raw, headers=headers))
        replay = c.request("webhook_replay", "POST", "/v1/payments/webhook", raw=raw, headers=headers)
        for a in (first, replay):
            if a.ok and a.data:
                with w.lock:
                    w.payments[event] = {"order": oid, "sent": "paid", "status": a.data["status"], "t": a.t_done,
                                         "t0": a.t_sent}
                    w.order_status[oid] = (a.t_done, a.data["status"], a.t_sent)
        if first.ok:
            c.webhook("webhook_reused_id", dict(body, status="failed"), msg_id=f"msg-{event}-2",
                      expect="event_id_reused")
    ctx.notes["abuse_rounds"] = rounds


def clock_skew(ctx: FaultCtx) -> None:
    """Nothing to inject while running: api1 runs 10 min ahead (libfaketime) from the start; check times."""
    ctx.wait(1.0)


def skew_check(ctx: FaultCtx) -> None:
    """Reservation times from the skewed API agree with the client's real clock (Redis TIME decides)."""
    worst: dict[int, float] = {}
    for a in ctx.witness.answers:
        if a.op == "reserve" and a.status == 201 and a.data:
            created = datetime.fromisoformat(a.data["created_at"].replace("Z", "+00:00")).timestamp()
            inside = a.t_sent - 1 <= created <= a.t_done + 1
            off = 0.0 if inside else min(abs(created - a.t_sent), abs(created - a.t_done))
            worst[a.port] = max(worst.get(a.port, 0.0), off)
    ports = ctx.stack.api_ports
    ctx.notes["created_at_off_s"] = {str(p): round(worst.get(p, -1), 3) for p in ports}
    skewed = ports[1] if len(ports) > 1 else None
    served = sum(1 for a in ctx.witness.answers if a.port == skewed and a.ok)
    ctx.checks["S_skewed_api_agrees"] = (skewed is not None and served > 0 and worst.get(skewed, 99) < 1.0,
                                         f"skewed API :{skewed} answered {served} ok; created_at off by "
                                         f"{worst.get(skewed, -1):.3f} s at most")


def _hot_slot() -> int:
    """The cluster slot of the hot SKU's partition (inventory/keys.py), the slot every HOT reserve runs in."""
    from redis.crc import key_slot

    from chaos.stack import KEY_PREFIX
    from inventory.config import CLUSTER_PARTITIONS
    from inventory.keys import KeySpace

    return key_slot(KeySpace(KEY_PREFIX, CLUSTER_PARTITIONS).of_sku("HOT").tag.encode())


REPLICATION_LAG_BOUND_S = 1.0  # how far behind a replica may be on loopback under this load, generously


def _promote_hot_replica(ctx: FaultCtx, *, kill: bool) -> None:
    """Make the replica of the hot SKU's master the master: killing the master first (the cluster's own
    failover) or, without `kill`, by CLUSTER FAILOVER (the coordinated one)."""
    cluster, slot = ctx.stack.cluster, _hot_slot()
    master = cluster.slot_owner(slot)
    replica = cluster.replicas_of(master)[0]
    started = time.time()
    if kill:
        cluster.kill_master(master)
    cluster.failover(replica)
    ctx.fault_end = time.time()
    if kill:
        ctx.loss_window = (started - REPLICATION_LAG_BOUND_S, ctx.fault_end)
    ctx.notes.update(slot=slot, old_master=master, master_killed=kill, promoted=replica,
                     failover_s=round(ctx.fault_end - started, 2))
    ctx.checks["S_hot_slot_moved"] = (cluster.slot_owner(slot) == replica,
                                      f"slot {slot} now served by {cluster.slot_owner(slot)}, promoted {replica}")


def cluster_failover(ctx: FaultCtx) -> None:
    """The hot SKU's master hands over to its replica (CLUSTER FAILOVER: the master stops taking writes,
    the replica catches up, then takes over), as in planned maintenance: nothing acknowledged may be lost."""
    _promote_hot_replica(ctx, kill=False)


def cluster_master_kill(ctx: FaultCtx) -> None:
    """The hot SKU's master is killed -9; the cluster promotes its replica by itself (node timeout 1 s).
    Replication is asynchronous, so what the master acknowledged in its last moments may be lost
    (docs/sync.md, "what a failover can lose"): never an oversell, and the system recovers without help."""
    _promote_hot_replica(ctx, kill=True)


def cluster_slot_migration(ctx: FaultCtx) -> None:
    """The hot SKU's slot resharded to another master in small batches while the sale runs (ASK and
    TRYAGAIN on the way): nothing acknowledged may be lost."""
    cluster, slot = ctx.stack.cluster, _hot_slot()
    source = cluster.slot_owner(slot)
    target = next(port for port in cluster.masters() if port != source)
    started = time.time()
    moved = cluster.migrate_slot(slot, target, batch_size=5, between_batches=lambda _: ctx.wait(0.2))
    ctx.fault_end = time.time()
    ctx.notes.update(slot=slot, source=source, target=target, keys_moved=moved,
                     migration_s=round(ctx.fault_end - started, 2))
    ctx.checks["S_hot_slot_moved"] = (cluster.slot_owner(slot) == target and moved > 0,
                                      f"{moved} keys of slot {slot} moved from {source} to {target}")


def _owner_of(stack: ChaosStack, port: int | None) -> tuple[str | None, int | None]:
    """Which of our processes (name, pid) has the client end of a connection on this local port (up to 2 s)."""
    if port is None:
        return None, None
    for _ in range(20):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.pid:
                try:
                    group = os.getpgid(conn.pid)
                except ProcessLookupError:
                    continue
                name = next((n for n, p in stack.live.items() if p.pid == group), f"pgid {group}")
                return name, conn.pid
        time.sleep(0.1)
    return None, None


def _hold_a_worker_commit(ctx: FaultCtx, attempts: int, *, in_child: bool = False) -> tuple[str | None, int | None]:
    """Hold PostgreSQL's answer to a Celery worker's COMMIT (in its pool child if asked); others are let through."""
    proxy = ctx.stack.proxy
    assert proxy is not None
    owners: list[str | None] = []
    for _ in range(attempts):
        proxy.freeze_next_commit()
        name, pid = _owner_of(ctx.stack, proxy.held_client_port()) if proxy.frozen.wait(20) else (None, None)
        owners.append(name)
        if name and name.startswith("worker") and (not in_child or pid != ctx.stack.pid(name)):
            ctx.notes["held_commit_owners"] = owners
            return name, pid
        proxy.thaw()
    ctx.notes["held_commit_owners"] = owners
    return None, None
