"""Every worker runs the recovery check on its own timer, so a flushed Redis is rebuilt even with beat down.

Each second a worker looks for the epoch marker (one EXISTS); if it is gone, Redis lost its data and the
check runs at once. Otherwise the full check (it reads Postgres) runs once per RECOVERY_INTERVAL_SECONDS
across all workers (a SET NX key), and `check_recovery`'s own lock keeps two rebuilds from overlapping.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from inventory.db import connect_args, make_session_factory
from inventory.engine import Inventory
from inventory.recovery import RecoveryCheck, check_recovery, redis_lost_data
from inventory.store import MEMORY_URL
from sync import runtime

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


def check_if_due(inv: Inventory, session_factory: sessionmaker[Session]) -> RecoveryCheck | None:
    """Run the recovery check if Redis lost its epoch marker or no worker ran it this interval."""
    lost = redis_lost_data(inv)
    interval_ms = max(1, int(inv.settings.recovery_interval_seconds * 1000))
    if not lost and not inv.redis.set(inv.keys.scoped("recovery:due"), "1", nx=True, px=interval_ms):
        return None
    return check_recovery(inv, session_factory)


class RecoveryTimer(bootsteps.StartStopStep):
    """Worker step: a daemon thread calling check_if_due every second until the worker stops."""

    label = "flashstock recovery timer"
    requires = ("celery.worker.components:Pool",)  # start once the pool has forked its children

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self, worker: Any) -> None:
        settings = runtime.settings()
        if settings.redis_url.startswith(MEMORY_URL):
            return  # embedded mode: the in-process housekeeper runs the check
        self._thread = threading.Thread(target=self._run, name="flashstock-recovery", daemon=True)
        self._thread.start()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        settings = runtime.settings()
        inv = Inventory.from_settings(settings)
        # Its own connections, none pooled: a prefork child forked while a check runs shares no socket.
        engine = create_engine(settings.database_url, poolclass=NullPool,
                               connect_args=connect_args(settings.database_url))
        sessions = make_session_factory(engine)
        try:
            while True:
                self._round(inv, sessions)
                if self._stop.wait(POLL_SECONDS):
                    return
        finally:
            engine.dispose()
            inv.redis.close()

    def _round(self, inv: Inventory, sessions: sessionmaker[Session]) -> None:
        try:
            check = check_if_due(inv, sessions)
        except Exception as error:  # noqa: BLE001 - the timer must outlive anything; the next second retries
            if not self._failing:  # once per outage, not once a second
                log.warning("recovery check failed (%s: %s); retrying every %.0f s",
                            type(error).__name__, error, POLL_SECONDS)
            self._failing = True
            return
        if self._failing:
            log.info("recovery check reaches Redis and Postgres again")
            self._failing = False
        if check is not None and check.state not in ("ok", "busy"):
            log.warning("recovery check: %s %s", check.state, check.reason)
