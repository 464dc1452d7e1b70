"""One X-Request-ID finds a checkout's API line, its outbox entry, its PostgreSQL row and the worker's lines.

Real redis-server, PostgreSQL, a Celery worker and beat; the checkout goes through the Flask app with the
sync layer's own trigger (`sync.tasks.notify_checkout`), published to the test's broker keys and queue.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import select

from api import create_app
from inventory import Inventory, Settings
from inventory.outbox import OrderEvent, parse_entries
from inventory.tables import OrderRow
from sync import runtime, tasks
from sync.app import make_celery
from tests.api.conftest import SF, with_api_settings
from tests.celery_workers import CeleryBeat, CeleryWorker, wait_for, worker_env
from tests.helpers import make_product

RID = "trace-checkout-0042"


@pytest.fixture
def sync_settings(settings: Settings) -> Settings:
    # Beat's own persistence round is an hour away: the drain that runs is the one the checkout queued.
    return settings.with_overrides(celery_queue=f"{settings.key_prefix}:q", persist_interval_seconds=3600.0)


@pytest.fixture
def processes() -> Iterator[list[CeleryWorker]]:
    started: list[CeleryWorker] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def root_logging() -> Iterator[None]:
    """create_app points the root logger at this test's captured stdout: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level


@pytest.fixture
def wired_trigger(real_redis: Any, sync_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """notify_checkout as in production, but on this test's prefix, broker keys and queue."""
    app = make_celery(sync_settings)
    inv = Inventory(real_redis, sync_settings)
    monkeypatch.setattr(runtime, "settings", lambda: sync_settings)
    monkeypatch.setattr(runtime, "inventory", lambda: inv)
    monkeypatch.setattr(tasks.persist_outbox, "apply_async",
                        lambda **options: app.send_task(tasks.persist_outbox.name, **options))
    yield
    app.close()


class PreforkWorker(CeleryWorker):
    """The worker as the Procfile runs it: prefork children, where the tasks and their log lines run."""

    def command(self) -> list[str]:
        return ["worker", "--pool=prefork", "--concurrency=2", *super().command()[2:]]


@pytest.mark.parametrize("worker_class", [CeleryWorker, PreforkWorker], ids=["solo", "prefork"])
def test_one_request_id_finds_the_api_line_outbox_entry_order_row_and_worker_lines(
        worker_class: type[CeleryWorker], real_redis: Any, migrated_db_url: str, pg_sessions,
        sync_settings: Settings, wired_trigger: None, root_logging: None,
        processes: list[CeleryWorker], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = worker_env(sync_settings, migrated_db_url)
    processes.append(CeleryBeat(tmp_path, "beat", env).start())
    api = create_app(with_api_settings(sync_settings), inventory=Inventory(real_redis, sync_settings))
    make_product(runtime.inventory(), "HOT", stock=5)
    client = api.test_client()
    held = client.post("/v1/reservations", json={"user_id": "alice", "items": [{"sku": "HOT", "qty": 1}]},
                       headers=SF)
    assert held.status_code == 201, held.get_json()
    capsys.readouterr()

    answer = client.post(f"/v1/reservations/{held.get_json()['data']['id']}/checkout", json={"user_id": "alice"},
                         headers={**SF, "X-Request-ID": RID})

    assert answer.status_code == 202 and answer.headers["X-Request-ID"] == RID
    order_id = answer.get_json()["data"]["id"]
    api_lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(line["request_id"], line["status"]) for line in api_lines if line["event"] == "request"] == [(RID, 202)]
    # The worker is not running yet, so the entry is still in the stream: the checkout wrote the id into it.
    created = [e for e in parse_entries(real_redis.xrange(runtime.inventory().keys.of_sku("HOT").outbox))
               if isinstance(e, OrderEvent) and e.order_id == order_id]
    assert [(e.kind, e.request_id) for e in created] == [("order_created", RID)]

    worker = worker_class(tmp_path, "worker", env).start()
    processes.append(worker)

    def persisted() -> str | None:
        with pg_sessions() as s:
            return s.scalar(select(OrderRow.request_id).where(OrderRow.id == order_id))

    assert wait_for(persisted, 60) == RID
    about_order = wait_for(lambda: [line for line in worker.json_lines()
                                    if line.get("order_id") == order_id], 60)
    assert [(line["event"], line["request_id"], line["kind"]) for line in about_order] == [
        ("order event persisted", RID, "order_created")]
    # The drain the checkout queued ran with the id bound: Celery's own line for it carries it too.
    wait_for(lambda: any(line.get("task") == "flashstock.persist_outbox" and line.get("request_id") == RID
                         and "succeeded" in line["event"] for line in worker.json_lines()), 60)
    wait_for(lambda: any("Sending due task" in line["event"] for line in processes[0].json_lines()), 60)

    for process in processes:
        process.stop()
    for process in processes:
        lines = process.json_lines()
        assert lines and all({"event", "level", "timestamp"} <= line.keys() for line in lines), process.name
