"""The workers' recovery timer: one full check per interval across workers, at once when the epoch is gone."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from inventory import Inventory, Settings
from sync import recovery_timer


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    done: list[Any] = []
    monkeypatch.setattr(recovery_timer, "check_recovery", lambda inv, sessions: done.append(sessions) or "ran")
    return done


def test_the_full_check_runs_once_per_interval_across_workers(checks: list[Any]) -> None:
    server = fakeredis.FakeServer()
    settings = Settings(key_prefix="w", recovery_interval_seconds=60)
    workers = [Inventory(fakeredis.FakeRedis(server=server), settings) for _ in range(3)]
    workers[0].redis.set(workers[0].keys.parts[0].epoch, "e1")

    results = [recovery_timer.check_if_due(inv, None) for inv in workers for _ in range(2)]

    assert results.count("ran") == 1 and len(checks) == 1


def test_a_missing_epoch_marker_runs_the_check_at_once_in_every_round(checks: list[Any]) -> None:
    inv = Inventory(fakeredis.FakeRedis(), Settings(key_prefix="w", recovery_interval_seconds=60))

    assert [recovery_timer.check_if_due(inv, None) for _ in range(3)] == ["ran"] * 3
