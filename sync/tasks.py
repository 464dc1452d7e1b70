"""Celery tasks: thin wrappers over the core (persist the outbox, expire holds, reconcile, recover)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from celery.signals import worker_process_init, worker_ready
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from inventory import housekeeping
from inventory.persistence import drain_once
from inventory.reconcile import run_reconciliation
from inventory.recovery import check_recovery, warn_if_not_durable
from inventory.store import MEMORY_URL
from sync import logs, runtime
from sync.app import app

log = logging.getLogger(__name__)

# Transient failures (database or Redis unreachable): retried with backoff; entries stay in the outbox.
TRANSIENT = (SQLAlchemyError, RedisError, ConnectionError, OSError)
_MAX_BATCHES = 20


def _flag() -> str:
    return runtime.inventory().keys.scoped("persist:scheduled")


@app.task(name="flashstock.persist_outbox", bind=True, acks_late=True, reject_on_worker_lost=True,
          autoretry_for=TRANSIENT, retry_backoff=1, retry_backoff_max=30, retry_jitter=True, max_retries=50)
def persist_outbox(self: Any) -> dict[str, int]:
    """Drain the outbox into the database; queue another round if the backlog outlasted this one."""
    inv = runtime.inventory()
    inv.redis.delete(_flag())  # checkouts from now on schedule a new round
    result = drain_once(inv, runtime.sessions(), max_batches=_MAX_BATCHES)
    if result.batches >= _MAX_BATCHES and result.backlog:
        persist_outbox.apply_async(queue=inv.settings.celery_queue)
    return dataclasses.asdict(result)


@app.task(name="flashstock.expire_holds", acks_late=True, reject_on_worker_lost=True)
def expire_holds() -> dict[str, int]:
    """Release reservations whose hold expired or whose payment deadline passed (stock back exactly once),
    then offer set-aside units to waiting buyers."""
    result = runtime.inventory().sweep()
    return {"expired": result.expired, "units_returned": result.units_returned, "offered": result.offered}


@app.task(name="flashstock.reconcile", acks_late=True, reject_on_worker_lost=True,
          autoretry_for=TRANSIENT, retry_backoff=2, max_retries=5)
def reconcile(full: bool = False) -> dict[str, Any]:
    """Compare Redis with the database for changed SKUs (or all) and repair drift."""
    report = run_reconciliation(runtime.inventory(), runtime.sessions(), repair=True, full=full)
    return {"run_id": report.run_id, "checked": report.skus_checked, "drifted": report.skus_drifted,
            "repaired": report.skus_repaired}


@app.task(name="flashstock.recovery_check", acks_late=True, reject_on_worker_lost=True,
          autoretry_for=TRANSIENT, retry_backoff=2, max_retries=5)
def recovery_check() -> dict[str, str]:
    """Rebuild Redis from the database if it came back empty or rolled back."""
    check = check_recovery(runtime.inventory(), runtime.sessions())
    return {"state": check.state, "reason": check.reason}


def notify_checkout(order_id: str | None = None, request_id: str | None = None) -> bool:
    """Ask for prompt persistence after a checkout; never raises (the beat safety net catches up).

    Embedded mode wakes the in-process housekeeper; otherwise at most one drain is queued at a time,
    carrying the checkout's request id (default: the one bound for the current request's log lines).
    """
    try:
        keeper = housekeeping.active()
        if keeper is not None:
            keeper.wake()
            return True
        settings = runtime.settings()
        if settings.redis_url.startswith(MEMORY_URL):
            return False
        inv = runtime.inventory()
        if not inv.redis.set(_flag(), order_id or "1", nx=True, px=2000):
            return False  # a drain is already queued and will pick this order up
        # The drain that persists this order's entry may be one queued by an earlier checkout: each
        # entry's own request id is in the entry ('rid') and in the drain's line for it.
        persist_outbox.apply_async(queue=settings.celery_queue, retry=False, headers=logs.task_headers(request_id))
        return True
    except Exception:  # the order is durable in Redis; persistence catches up from the outbox anyway
        log.warning("persist trigger failed for %s", order_id, exc_info=True)
        return False


@worker_process_init.connect
def _fresh_process(**_: Any) -> None:
    runtime.reset()  # no connection pool crosses a fork


@worker_ready.connect
def _on_worker_ready(**_: Any) -> None:
    """At start-up: warn about a Redis that can lose data (the recovery timer checks it at once)."""
    try:
        warn_if_not_durable(runtime.inventory())
    except TRANSIENT:
        log.warning("cannot read Redis persistence settings at start-up", exc_info=True)
    finally:
        runtime.reset()
