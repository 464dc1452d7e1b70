"""A worker whose database does not answer still stops promptly on SIGTERM, and loses nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from inventory import Inventory, Settings
from tests.celery_workers import ROOT, send, wait_for, worker_env
from tests.helpers import make_product

CLI = [sys.executable, "-m", "cli"]


@pytest.fixture
def silent_database() -> Iterator[str]:
    """A PostgreSQL URL whose port takes TCP connections into its backlog and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{listener.getsockname()[1]}/flashstock"
    finally:
        listener.close()


def test_worker_with_an_unanswering_database_exits_soon_after_sigterm_and_keeps_the_outbox(
        real_inv: Inventory, settings: Settings, silent_database: str, tmp_path: Path) -> None:
    sync_settings = settings.with_overrides(celery_queue=f"{settings.key_prefix}:q")
    make_product(real_inv, "HOT", stock=10)
    for buyer in ("b1", "b2", "b3"):
        real_inv.reservations.checkout(real_inv.reservations.reserve(buyer, {"HOT": 1}).id)
    outbox = real_inv.keys.of_sku("HOT").outbox
    before = [entry_id for entry_id, _ in real_inv.redis.xrange(outbox)]
    assert before
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen([*CLI, "worker"], cwd=ROOT, env={**os.environ, **worker_env(sync_settings,
                                  silent_database)}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: b" ready." in log_path.read_bytes() or worker.poll() is not None, 60)
        assert worker.poll() is None, log_path.read_text()
        send(sync_settings, "flashstock.persist_outbox")
        wait_for(lambda: b"persist_outbox" in log_path.read_bytes(), 30)
        time.sleep(0.5)  # the drain is now waiting on the silent database
        stopped_at = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker ignored SIGTERM for 15 s:\n" + log_path.read_text()[-3000:])
        assert time.monotonic() - stopped_at < 10, log_path.read_text()[-3000:]
    finally:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        worker.wait(10)
    assert [entry_id for entry_id, _ in real_inv.redis.xrange(outbox)] == before  # nothing acknowledged
