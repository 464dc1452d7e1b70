"""kill -9 a Celery worker in the middle of persisting: the restarted worker lands every order exactly once."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from inventory import Inventory, Settings
from inventory.persistence import GROUP
from inventory.reconcile import run_reconciliation
from inventory.tables import LedgerRow, OrderLineRow, OrderRow, PaymentEventRow
from tests.celery_workers import CeleryWorker, send, wait_for, worker_env
from tests.helpers import make_product, outbox_length, outbox_pending, stock

N = 400


def _count(sessions, model) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)))


def test_kill_9_mid_persistence_then_restart_persists_the_same_set_without_duplicates(
        real_inv: Inventory, pg_sessions, migrated_db_url: str, settings: Settings, tmp_path: Path,
        workers: list[CeleryWorker]) -> None:
    sync_settings = settings.with_overrides(celery_queue=f"{settings.key_prefix}:q")
    make_product(real_inv, "HOT", stock=N + 50)
    make_product(real_inv, "TEE", stock=N)
    orders = []
    for i in range(N):
        held = real_inv.reservations.reserve(f"b{i}", {"HOT": 1, "TEE": 1} if i % 3 == 0 else {"HOT": 1})
        orders.append(real_inv.reservations.checkout(held.id).id)
    for i in range(0, N, 4):
        real_inv.reservations.record_payment(event_id=f"pay-{i}", result="paid" if i % 8 else "failed",
                                             order_id=orders[i])
    env = worker_env(sync_settings, migrated_db_url, persist_batch_size=5)

    kills = []
    for n in range(2):  # killed twice, each time once some batches have committed
        worker = CeleryWorker(tmp_path, f"victim{n}", env).start()
        workers.append(worker)
        before = _count(pg_sessions, OrderRow)
        send(sync_settings, "flashstock.persist_outbox")
        wait_for(lambda: _count(pg_sessions, OrderRow) > before, interval=0.005)
        worker.kill9()
        kills.append(_count(pg_sessions, OrderRow))

    survivor = CeleryWorker(tmp_path, "survivor", env).start()
    workers.append(survivor)

    def drained() -> bool:
        # As beat does every PERSIST_INTERVAL_SECONDS: the entries the victims held become claimable only
        # once idle for PERSIST_CLAIM_IDLE_SECONDS, which a single early round may not wait for.
        send(sync_settings, "flashstock.persist_outbox")
        return outbox_length(real_inv) == 0

    wait_for(drained, interval=0.5)

    with pg_sessions() as s:
        persisted = sorted(s.scalars(select(OrderRow.id)))
        sold = s.scalar(select(func.sum(LedgerRow.sold_delta)))
        sold_rows = s.scalar(select(func.count()).select_from(LedgerRow).where(LedgerRow.kind == "sold"))
    assert persisted == sorted(orders)
    assert _count(pg_sessions, OrderLineRow) == N + len(range(0, N, 3))
    assert sold_rows == N + len(range(0, N, 3))
    assert _count(pg_sessions, PaymentEventRow) == len(range(0, N, 4))
    assert sold == stock(real_inv, "HOT").sold + stock(real_inv, "TEE").sold
    assert outbox_pending(real_inv, GROUP) == 0
    assert run_reconciliation(real_inv, pg_sessions, repair=False, full=True).clean
    print(f"\nkill test: {N} orders; rows when killed: {kills}; rows after restart: {len(persisted)}")
