"""Reproduce a false "Redis rolled back" in inventory.recovery: a drain that commits between
check_recovery's two reads (the stream's last id, then PostgreSQL's last persisted id) makes it rebuild
Redis from PostgreSQL, pausing every SKU meanwhile. Found by bench/full_flow.py (scenario 2).

    .venv/bin/python -m bench.repro_recovery_race     # exit 1 while the race exists, 0 once fixed
"""

from __future__ import annotations

import tempfile

import fakeredis

from inventory import Inventory, Settings, recovery
from inventory.db import make_engine, make_session_factory
from inventory.migrations import upgrade
from inventory.persistence import drain_once


def main() -> int:
    """A quiet check says ok; the same check with a checkout persisted in between must say ok too."""
    url = f"sqlite:///{tempfile.mkdtemp()}/race.db"
    upgrade(url)
    sessions = make_session_factory(make_engine(url))
    inv = Inventory(fakeredis.FakeRedis(server=fakeredis.FakeServer()), Settings(key_prefix="race"))
    recovery.check_recovery(inv, sessions)  # initialised: epoch marker, sync_state row
    inv.catalog.configure("HOT", name="hot", price=100)
    inv.catalog.adjust_stock("HOT", set_total=10)
    drain_once(inv, sessions)
    print("quiet check:", recovery.check_recovery(inv, sessions).state)

    real = recovery.stream_last_id

    def last_id_then_a_checkout_is_persisted(i: Inventory) -> recovery.StreamId:
        last = real(i)  # the check has read the stream's last id; meanwhile the API takes a checkout ...
        inv.reservations.checkout(inv.reservations.reserve("u1", {"HOT": 1}).id)
        drain_once(inv, sessions)  # ... and a worker persists it before the check reads sync_state
        return last

    recovery.stream_last_id = last_id_then_a_checkout_is_persisted
    try:
        check = recovery.check_recovery(inv, sessions)
    finally:
        recovery.stream_last_id = real
    print("racing check:", check.state, "-", check.reason or "no recovery needed")
    return 0 if check.state == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
