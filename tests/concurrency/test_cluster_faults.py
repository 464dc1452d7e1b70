"""Reserves and checkouts from many threads while a Redis Cluster fails over or reshards a hot SKU's slot.

What a failover can lose (docs/sync.md, "Redis Cluster: what a failover can lose"): replication is
asynchronous, so a master that dies takes with it the writes its replica had not received yet. These
tests therefore assert, for each kind of fault, exactly what the system promises:

* a coordinated failover (CLUSTER FAILOVER: the master stops, the replica catches up, then takes over)
  and a live slot migration lose nothing: every successful answer is a unit held or sold, exactly;
* a master crash may lose the last acknowledged writes of its own partitions only: never an oversell,
  never a unit held or sold that nobody was told about, the other masters' SKUs stay exact, and after
  the system's own recovery (check_recovery, then reconciliation) Redis and PostgreSQL agree.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis
from redis.crc import key_slot
from sqlalchemy import func, select

from inventory import Inventory, Settings
from inventory.buyers import read_buyers
from inventory.errors import InventoryError
from inventory.persistence import drain_once
from inventory.reconcile import run_reconciliation
from inventory.recovery import check_recovery
from inventory.tables import OrderLineRow, OrderRow
from tests.conftest import REDIS_URL, start_cluster
from tests.helpers import assert_invariant, make_product, stock
from tests.own_cluster import OwnCluster

HOT, OTHERS = "HOT", ["TEE", "MUG", "CAP", "BAG"]
LIMIT = 3  # per user, on every SKU
USERS = 150
THREADS = 12


@dataclass
class Tally:
    """What the clients were told, per SKU, and what went wrong, by kind."""

    ok_units: Counter = field(default_factory=Counter)  # reserve answered 'held' (incl. ones checked out)
    unknown_units: Counter = field(default_factory=Counter)  # reserve failed on the wire: may have applied
    refused: Counter = field(default_factory=Counter)  # domain refusals by code
    errors: Counter = field(default_factory=Counter)  # Redis / cluster errors by exception name
    samples: dict = field(default_factory=dict)  # exception name -> first message seen
    per_user: Counter = field(default_factory=Counter)  # (sku, user) -> units answered 'held'
    checkouts: int = 0
    reserves: int = 0
    first_error_at: float | None = None
    last_error_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, error: BaseException) -> None:
        with self.lock:
            self.errors[type(error).__name__] += 1
            self.samples.setdefault(type(error).__name__, str(error)[:120])
            now = time.monotonic()
            self.first_error_at = self.first_error_at or now
            self.last_error_at = now


def cluster_inventory(cluster: OwnCluster, prefix: str) -> Inventory:
    """The core on the cluster, as a production process builds it (connect_cluster: no command retries)."""
    return Inventory.from_settings(Settings(key_prefix=prefix, redis_url=cluster.url, celery_broker_url=REDIS_URL,
                                            redis_timeout_seconds=2))


def trade(inv: Inventory, tally: Tally, stop: threading.Event, seed: int) -> None:
    """Reserve one unit (mostly of the hot SKU) and check half of the holds out, until told to stop."""
    rng = random.Random(seed)
    while not stop.is_set():
        sku = HOT if rng.random() < 0.7 else rng.choice(OTHERS)
        user = f"u{rng.randrange(USERS)}"
        try:
            held = inv.reservations.reserve(user, {sku: 1}, ttl_seconds=3600)
        except InventoryError as error:
            with tally.lock:
                tally.refused[error.code] += 1
            continue
        except (redis.RedisError, redis.exceptions.RedisClusterException) as error:
            tally.error(error)
            if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
                with tally.lock:  # the script may have run before the connection broke
                    tally.unknown_units[sku] += 1
            time.sleep(0.01)
            continue
        with tally.lock:
            tally.reserves += 1
            tally.ok_units[sku] += 1
            tally.per_user[(sku, user)] += 1
        if rng.random() < 0.5:
            try:
                inv.reservations.checkout(held.id)
                with tally.lock:
                    tally.checkouts += 1
            except InventoryError as error:
                with tally.lock:
                    tally.refused[f"checkout:{error.code}"] += 1
            except (redis.RedisError, redis.exceptions.RedisClusterException) as error:
                tally.error(error)  # the hold stays held or became sold: either way one unit of held + sold


def watch_available(inv: Inventory, stop: threading.Event, lowest: list[int]) -> None:
    """Sample every SKU's available counter while the fault runs; never below zero."""
    skus = [HOT, *OTHERS]
    while not stop.is_set():
        for sku in skus:
            try:
                value = int(inv.redis.hget(inv.keys.sku(sku).stock, "avail") or 0)
            except (redis.RedisError, redis.exceptions.RedisClusterException):
                continue
            lowest[0] = min(lowest[0], value)
        time.sleep(0.005)


def run_traffic(inv: Inventory, fault: Callable[[], None], *, warmup: float = 0.5,
                after: float = 1.0) -> tuple[Tally, int, float]:
    """THREADS traders and a watcher around `fault()`; returns the tally, the lowest available and
    how long the fault took."""
    tally, stop, lowest = Tally(), threading.Event(), [10**9]
    threads = [threading.Thread(target=trade, args=(inv, tally, stop, seed)) for seed in range(THREADS)]
    threads.append(threading.Thread(target=watch_available, args=(inv, stop, lowest)))
    for thread in threads:
        thread.start()
    try:
        time.sleep(warmup)
        started = time.monotonic()
        fault()
        took = time.monotonic() - started
        time.sleep(after)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    return tally, lowest[0], took


def seed_products(inv: Inventory, hot_stock: int = 400, other_stock: int = 150) -> None:
    make_product(inv, HOT, stock=hot_stock, limit=LIMIT)
    for sku in OTHERS:
        make_product(inv, sku, stock=other_stock, limit=LIMIT)


def hot_slot(inv: Inventory) -> int:
    """The cluster slot of the hot SKU's partition: every key of that partition lives in it."""
    return key_slot(inv.keys.of_sku(HOT).tag.encode())


def assert_exact(inv: Inventory, tally: Tally, skus: list[str]) -> None:
    """Each SKU's counters add up, and held + sold is exactly the units the clients were told were held."""
    for sku in skus:
        level = stock(inv, sku)
        assert_invariant(level)
        assert level.held + level.sold == tally.ok_units[sku], (sku, level, tally.ok_units[sku], tally.errors)


def assert_limits(inv: Inventory, tally: Tally) -> None:
    """Nobody above the per-user limit: neither in what they were told nor in Redis's buyer counts."""
    assert max(tally.per_user.values(), default=0) <= LIMIT
    for sku in [HOT, *OTHERS]:
        buyers = read_buyers(inv.redis, inv.keys.sku(sku))
        assert all(units <= LIMIT for units in buyers.values()), (sku, buyers)


def report(name: str, tally: Tally, lowest: int, took: float, **extra: Any) -> None:
    print(f"\n{name}: {tally.reserves} reserves answered held ({tally.checkouts} checked out), "
          f"refused {dict(tally.refused)}, errors {dict(tally.errors)}, fault took {took:.2f}s, "
          f"lowest available {lowest}, first messages {tally.samples}" + "".join(f", {k} {v}" for k, v in extra.items()))


@pytest.fixture
def prefix(key_prefix: str, redis_server: redis.Redis) -> Iterator[str]:
    """The test's key prefix; its keys go with its private cluster, its broker keys from the shared server."""
    yield key_prefix
    from tests.conftest import delete_prefix

    delete_prefix(redis_server, key_prefix)


def test_a_coordinated_failover_of_the_hot_skus_master_under_load_loses_nothing(
        replicated_cluster: OwnCluster, prefix: str) -> None:
    inv = cluster_inventory(replicated_cluster, prefix)
    seed_products(inv)
    master = replicated_cluster.slot_owner(hot_slot(inv))
    replica = replicated_cluster.replicas_of(master)[0]

    tally, lowest, took = run_traffic(inv, lambda: replicated_cluster.failover(replica))

    assert replicated_cluster.slot_owner(hot_slot(inv)) == replica
    report("coordinated failover", tally, lowest, took)
    assert lowest >= 0 and tally.reserves > 0
    assert not tally.unknown_units, tally.errors  # CLUSTER FAILOVER pauses writes: no reply is lost
    assert_exact(inv, tally, [HOT, *OTHERS])
    assert_limits(inv, tally)
    inv.redis.close()


def _persisted_sold(sessions: Any, sku: str) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.coalesce(func.sum(OrderLineRow.qty), 0))
                            .join(OrderRow, OrderRow.id == OrderLineRow.order_id)
                            .where(OrderLineRow.sku == sku)) or 0)


def test_a_crashed_master_fails_over_without_oversell_and_recovery_makes_redis_and_postgres_agree(
        replicated_cluster: OwnCluster, prefix: str, pg_sessions: Any) -> None:
    inv = cluster_inventory(replicated_cluster, prefix)
    assert check_recovery(inv, pg_sessions).state == "initialized"  # every partition gets its epoch marker
    seed_products(inv)
    drain_once(inv, pg_sessions)
    master = replicated_cluster.slot_owner(hot_slot(inv))
    replica = replicated_cluster.replicas_of(master)[0]
    survivors = [sku for sku in OTHERS if replicated_cluster.slot_owner(key_slot(inv.keys.of_sku(sku).tag.encode()))
                 != master]
    stop_drain = threading.Event()

    def drainer() -> None:  # the Celery worker's job, in a thread: persistence keeps up during the fault
        while not stop_drain.is_set():
            try:
                drain_once(inv, pg_sessions, batch_size=50, claim_idle_ms=0)
            except (redis.RedisError, redis.exceptions.RedisClusterException):
                time.sleep(0.05)

    recovered_at: list[float] = []

    def crash() -> None:
        killed_at = time.monotonic()
        replicated_cluster.kill_master(master)
        replicated_cluster.failover(replica)  # the cluster's own automatic failover, awaited
        probe = cluster_inventory(replicated_cluster, prefix)
        while time.monotonic() - killed_at < 30:  # until the hot SKU answers again (held or refused)
            try:
                probe.catalog.get(HOT)
                recovered_at.append(time.monotonic() - killed_at)
                break
            except (redis.RedisError, redis.exceptions.RedisClusterException):
                time.sleep(0.05)
        probe.redis.close()

    drain = threading.Thread(target=drainer)
    drain.start()
    try:
        tally, lowest, took = run_traffic(inv, crash, warmup=1.0)
    finally:
        stop_drain.set()
        drain.join(30)

    # The system's own recovery: the partition that came back from its replica is checked against
    # what PostgreSQL persisted (epoch marker, outbox position) and rebuilt if it is behind; then the
    # reconciliation compares every SKU with the ledger.
    started = time.monotonic()
    check = check_recovery(inv, pg_sessions)
    drain_once(inv, pg_sessions, claim_idle_ms=0)
    run_reconciliation(inv, pg_sessions, repair=True, full=True)
    drain_once(inv, pg_sessions, claim_idle_ms=0)
    final = run_reconciliation(inv, pg_sessions, repair=True, full=True)
    recovery_seconds = time.monotonic() - started

    hot = stock(inv, HOT)
    lost = tally.ok_units[HOT] - (hot.held + hot.sold)
    report("master crash", tally, lowest, took, recovery_check=check.state,
           hot_answering_again_after=f"{recovered_at[0]:.2f}s" if recovered_at else "never",
           recovery_and_reconcile=f"{recovery_seconds:.2f}s", hot_units_lost=lost,
           hot_unknown=tally.unknown_units[HOT])
    assert recovered_at, "the hot SKU never answered again after the failover"
    assert lowest >= 0 and tally.reserves > 0
    for sku in [HOT, *OTHERS]:
        level = stock(inv, sku)
        assert_invariant(level)
        # Never a unit held or sold that no client was told about (beyond replies lost on the wire).
        assert level.held + level.sold <= tally.ok_units[sku] + tally.unknown_units[sku], (sku, level)
    # SKUs on masters that did not fail lose nothing: exact.
    for sku in survivors:
        level = stock(inv, sku)
        assert tally.ok_units[sku] <= level.held + level.sold <= tally.ok_units[sku] + tally.unknown_units[sku], \
            (sku, level, tally.ok_units[sku], tally.unknown_units[sku])
    assert_limits(inv, tally)
    # Redis and PostgreSQL agree after recovery: nothing left to repair, and sold == persisted order lines.
    assert final.clean, final.drifts
    for sku in [HOT, *OTHERS]:
        assert stock(inv, sku).sold == _persisted_sold(pg_sessions, sku), sku
    inv.redis.close()


def test_resharding_the_hot_skus_slot_while_it_sells_keeps_counts_exact(tmp_path: Path, prefix: str) -> None:
    cluster = start_cluster(tmp_path / "reshard-cluster")
    try:
        inv = cluster_inventory(cluster, prefix)
        seed_products(inv)
        slot = hot_slot(inv)
        source = cluster.slot_owner(slot)
        target = next(port for port in cluster.masters() if port != source)
        batches: list[int] = []

        def between_batches(moved: int) -> None:
            batches.append(moved)
            time.sleep(0.05)  # traffic meets the half-migrated slot: ASK for moved keys, TRYAGAIN for split scripts

        tally, lowest, took = run_traffic(
            inv, lambda: cluster.migrate_slot(slot, target, batch_size=3, between_batches=between_batches))

        assert cluster.slot_owner(slot) == target
        report("slot migration", tally, lowest, took, batches=len(batches), keys_moved=batches[-1])
        assert len(batches) > 3  # the migration really ran in several batches under traffic
        assert lowest >= 0 and tally.reserves > 0
        assert not tally.unknown_units, tally.errors  # TRYAGAIN and ASK are answers, never lost replies
        assert_exact(inv, tally, [HOT, *OTHERS])
        assert_limits(inv, tally)
        inv.redis.close()
    finally:
        cluster.stop()


def test_the_api_answers_503_or_a_decision_while_the_hot_slot_migrates_and_never_miscounts(
        tmp_path: Path, prefix: str) -> None:
    from api import create_app
    from tests.api.conftest import SF, with_api_settings

    cluster = start_cluster(tmp_path / "reshard-api-cluster")
    try:
        inv = cluster_inventory(cluster, prefix)
        seed_products(inv, hot_stock=300)
        app = create_app(with_api_settings(inv.settings), inventory=inv, on_checkout=None)
        statuses: Counter = Counter()
        held_units: Counter = Counter()
        lock, stop = threading.Lock(), threading.Event()

        def buyer(seed: int) -> None:
            rng = random.Random(seed)
            with app.test_client() as client:
                while not stop.is_set():
                    sku = HOT if rng.random() < 0.8 else rng.choice(OTHERS)
                    answer = client.post("/v1/reservations", headers=SF, json={
                        "user_id": f"u{rng.randrange(USERS)}", "items": [{"sku": sku, "qty": 1}]})
                    with lock:
                        code = answer.get_json().get("error", {}).get("code", "")
                        statuses[(answer.status_code, code)] += 1
                        if answer.status_code == 201:
                            held_units[sku] += 1

        threads = [threading.Thread(target=buyer, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.3)
            slot = hot_slot(inv)
            target = next(port for port in cluster.masters() if port != cluster.slot_owner(slot))
            cluster.migrate_slot(slot, target, batch_size=3, between_batches=lambda moved: time.sleep(0.05))
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)

        print(f"\nAPI during slot migration: {dict(statuses)}")
        assert {status for status, _ in statuses} <= {201, 409, 503}, statuses
        assert all(code in ("", "limit_exceeded", "sold_out", "unavailable") for _, code in statuses), statuses
        assert statuses[(201, "")] > 0
        for sku in [HOT, *OTHERS]:
            level = stock(inv, sku)
            assert_invariant(level)
            assert level.held + level.sold == held_units[sku], (sku, level, held_units[sku])
        inv.redis.close()
    finally:
        cluster.stop()
