"""A worker whose consumer stops taking tasks exits with 75 and loses nothing; a busy worker stays up."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from inventory import Settings
from sync.consumer_watchdog import EXIT_CODE
from tests.celery_workers import CeleryWorker, send, wait_for, worker_env

LIMIT_S = 5


class WatchedWorker(CeleryWorker):
    """A real worker on tests.watchdog_app (sync.app plus test tasks), watchdog limit LIMIT_S, with the
    deployment's prefork pool (one child: busy while it runs a task)."""

    app = "tests.watchdog_app"

    def command(self) -> list[str]:
        return [arg if arg != "--pool=solo" else "--pool=prefork" for arg in super().command()] + ["-c", "1"]


def _env(settings: Settings, database_url: str, **extra: object) -> dict[str, str]:
    return worker_env(settings, database_url, worker_stall_exit_seconds=LIMIT_S, **extra)


def test_a_worker_that_stops_consuming_exits_75_and_a_fresh_one_runs_the_waiting_task(
        real_redis: redis.Redis, settings: Settings, migrated_db_url: str, tmp_path: Path,
        workers: list[CeleryWorker]) -> None:
    sync_settings = settings.with_overrides(celery_queue=f"{settings.key_prefix}:q")
    stalled = WatchedWorker(tmp_path, "stalled", _env(sync_settings, migrated_db_url, test_stop_consuming=1))
    workers.append(stalled.start())
    done = f"{settings.key_prefix}:test:marked"
    started = time.monotonic()
    send(sync_settings, "tests.mark", key=done)

    wait_for(lambda: not stalled.alive(), timeout=LIMIT_S + 40)
    assert stalled.proc is not None and stalled.proc.returncode == EXIT_CODE, stalled.log()[-3000:]
    assert time.monotonic() - started >= LIMIT_S  # not before the limit
    verdicts = [line for line in stalled.json_lines() if "consumer stalled" in str(line.get("event", line))]
    assert len(verdicts) == 1, stalled.log()[-3000:]
    assert verdicts[0]["level"] == "error"
    assert not real_redis.exists(done)  # the stalled worker never ran it

    fresh = WatchedWorker(tmp_path, "fresh", _env(sync_settings, migrated_db_url))  # what the supervisor does
    workers.append(fresh.start())
    wait_for(lambda: real_redis.exists(done), timeout=30)
    assert fresh.alive()


def test_a_busy_worker_with_tasks_waiting_is_not_taken_for_a_stalled_one(
        real_redis: redis.Redis, settings: Settings, migrated_db_url: str, tmp_path: Path,
        workers: list[CeleryWorker]) -> None:
    sync_settings = settings.with_overrides(celery_queue=f"{settings.key_prefix}:q")
    busy = WatchedWorker(tmp_path, "busy", _env(sync_settings, migrated_db_url))  # one task at a time
    workers.append(busy.start())
    done = f"{settings.key_prefix}:test:after-sleep"
    send(sync_settings, "tests.sleep", seconds=2 * LIMIT_S)
    wait_for(lambda: "tests.sleep" in busy.log(), timeout=30)
    send(sync_settings, "tests.mark", key=done)  # waits the whole sleep, the worker busy

    wait_for(lambda: real_redis.exists(done) or not busy.alive(), timeout=4 * LIMIT_S + 30)
    assert busy.alive(), busy.log()[-3000:]
    assert real_redis.exists(done)
    assert "consumer stalled" not in busy.log()
