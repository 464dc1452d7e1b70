"""A real Celery worker persists the outbox into Postgres; an unreachable database loses nothing (real servers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from inventory import Inventory, Settings
from inventory.reconcile import run_reconciliation
from inventory.tables import LedgerRow, OrderRow
from tests.celery_workers import RABBITMQ_URL, CeleryWorker, TcpProxy, require_rabbitmq, send, wait_for, worker_env
from tests.helpers import make_product, outbox_length, stock


@pytest.fixture
def sync_settings(settings: Settings) -> Settings:
    return settings.with_overrides(celery_queue=f"{settings.key_prefix}:q")


def _orders(sessions) -> list[str]:
    with sessions() as s:
        return sorted(s.scalars(select(OrderRow.id)))


def _sell(inv: Inventory, n: int, start: int = 0) -> list[str]:
    return [inv.reservations.checkout(inv.reservations.reserve(f"b{i}", {"HOT": 1}).id).id
            for i in range(start, start + n)]


def test_the_worker_persists_exactly_n_orders_and_redis_and_postgres_agree(
        real_inv: Inventory, pg_sessions, migrated_db_url: str, sync_settings: Settings, tmp_path: Path,
        workers: list[CeleryWorker]) -> None:
    make_product(real_inv, "HOT", stock=250)
    orders = _sell(real_inv, 200)
    workers.append(CeleryWorker(tmp_path, "w1", worker_env(sync_settings, migrated_db_url)).start())

    send(sync_settings, "flashstock.persist_outbox")

    wait_for(lambda: outbox_length(real_inv) == 0 and len(_orders(pg_sessions)) == 200)
    assert _orders(pg_sessions) == sorted(orders)
    with pg_sessions() as s:
        assert s.scalar(select(func.sum(LedgerRow.sold_delta))) == stock(real_inv).sold == 200
    send(sync_settings, "flashstock.reconcile", full=True)
    wait_for(lambda: any("flashstock.reconcile" in line["event"] and "succeeded" in line["event"]
                         for line in workers[0].json_lines()))
    assert run_reconciliation(real_inv, pg_sessions, repair=False, full=True).clean


def test_postgres_unreachable_during_persistence_then_back_lands_everything_once(
        real_inv: Inventory, pg_sessions, migrated_db_url: str, sync_settings: Settings, tmp_path: Path,
        workers: list[CeleryWorker]) -> None:
    url = make_url(migrated_db_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        make_product(real_inv, "HOT", stock=500)
        first = _sell(real_inv, 150)
        env = worker_env(sync_settings, proxy.url_for(migrated_db_url), persist_batch_size=10)
        workers.append(CeleryWorker(tmp_path, "w-pg", env).start())
        send(sync_settings, "flashstock.persist_outbox")
        wait_for(lambda: len(_orders(pg_sessions)) > 0, interval=0.01)

        proxy.cut()  # mid-drain: open transactions die, reconnects are refused
        during = _sell(real_inv, 50, start=150)
        send(sync_settings, "flashstock.persist_outbox")
        wait_for(lambda: "OperationalError" in workers[0].log())
        stuck = len(_orders(pg_sessions))
        assert stuck < 200 and outbox_length(real_inv) > 0

        proxy.restore()
        send(sync_settings, "flashstock.persist_outbox")  # the beat safety net would do the same
        wait_for(lambda: len(_orders(pg_sessions)) == 200 and outbox_length(real_inv) == 0)
    finally:
        proxy.close()
    assert _orders(pg_sessions) == sorted(first + during)
    with pg_sessions() as s:
        assert s.scalar(select(func.count()).select_from(LedgerRow).where(LedgerRow.kind == "sold")) == 200
    assert run_reconciliation(real_inv, pg_sessions, repair=False, full=True).clean


@pytest.mark.single_node("the broker, not the inventory's Redis, is under test")
def test_a_rabbitmq_broker_works_the_same(real_inv: Inventory, pg_sessions, migrated_db_url: str,
                                          sync_settings: Settings, tmp_path: Path,
                                          workers: list[CeleryWorker]) -> None:
    from kombu import Connection

    broker = RABBITMQ_URL
    amqp = sync_settings.with_overrides(celery_broker_url=broker)
    require_rabbitmq(broker)
    make_product(real_inv, "HOT", stock=30)
    orders = _sell(real_inv, 20)
    try:
        env = worker_env(amqp, migrated_db_url, celery_broker_url=broker)
        workers.append(CeleryWorker(tmp_path, "w-amqp", env).start())
        send(amqp, "flashstock.persist_outbox")
        wait_for(lambda: _orders(pg_sessions) == sorted(orders))
    finally:
        for worker in workers:
            worker.stop()
        with Connection(broker) as conn:  # remove the queue this test created
            conn.default_channel.queue_delete(amqp.celery_queue)
    assert outbox_length(real_inv) == 0
