"""In-process housekeeping for the embedded mode (no Celery): persist, expire, reconcile, recover.

The same core functions the Celery tasks wrap, on a daemon thread; `wake()` makes it persist now
(the API calls it after a checkout through `sync.tasks.notify_checkout`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from inventory.engine import Inventory
from inventory.persistence import drain_once
from inventory.reconcile import run_reconciliation
from inventory.recovery import check_recovery

log = logging.getLogger(__name__)

_ACTIVE: "Housekeeper | None" = None


@dataclass
class Housekeeper:
    """Runs persistence, the expiry sweep, reconciliation and the recovery check on their intervals."""

    inv: Inventory
    session_factory: sessionmaker[Session]
    clock: Callable[[], float] = time.monotonic
    _due: dict[str, float] = field(default_factory=dict)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run_once(self) -> dict[str, object]:
        """One round: recovery check and persistence always, sweep and reconcile when due."""
        s, now, done = self.inv.settings, self.clock(), {}
        if self._is_due("recovery", now, s.recovery_interval_seconds):
            done["recovery"] = check_recovery(self.inv, self.session_factory)
        done["persist"] = drain_once(self.inv, self.session_factory, claim_idle_ms=0)
        if self._is_due("expire", now, s.expire_interval_seconds):
            done["expire"] = self.inv.sweep()
        if self._is_due("reconcile", now, s.reconcile_interval_seconds):
            done["reconcile"] = run_reconciliation(self.inv, self.session_factory, repair=True)
        return done

    def _is_due(self, name: str, now: float, every: float) -> bool:
        if now < self._due.get(name, 0.0):
            return False
        self._due[name] = now + every
        return True

    def wake(self) -> None:
        """Persist promptly (after a checkout) instead of waiting for the next interval."""
        self._wake.set()

    def start(self) -> "Housekeeper":
        """Run on a daemon thread until stop(); becomes the process's active housekeeper."""
        global _ACTIVE
        self._thread = threading.Thread(target=self._loop, name="flashstock-housekeeping", daemon=True)
        self._thread.start()
        _ACTIVE = self
        return self

    def stop(self, timeout: float = 5.0) -> None:
        global _ACTIVE
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if _ACTIVE is self:
            _ACTIVE = None

    def _loop(self) -> None:
        interval = min(self.inv.settings.persist_interval_seconds, self.inv.settings.expire_interval_seconds)
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # keep the thread alive; the next round retries (nothing is acked on failure)
                log.exception("housekeeping round failed")
            self._wake.wait(interval)
            self._wake.clear()


def start_embedded(inv: Inventory, database_url: str | None = None) -> Housekeeper:
    """Embedded mode at start-up: migrate the database, rebuild Redis from it if needed, start the thread."""
    from inventory.db import make_engine, make_session_factory
    from inventory.migrations import upgrade

    url = database_url or inv.settings.database_url
    upgrade(url)
    sessions = make_session_factory(make_engine(url))
    check_recovery(inv, sessions)
    return Housekeeper(inv, sessions).start()


def active() -> Housekeeper | None:
    """The housekeeper running in this process, if any (embedded mode)."""
    return _ACTIVE
