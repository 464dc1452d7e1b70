"""The consumer watchdog's verdict from samples, its way out, and its setting."""

from __future__ import annotations

import threading

import pytest
from celery.worker import state as worker_state

from inventory.config import Settings
from sync import consumer_watchdog
from sync.consumer_watchdog import EXIT_CODE, StallWatch, stop_stalled_worker


def _run(watch: StallWatch, samples: list[tuple[float, int | None, bool, float]]) -> list[bool]:
    return [watch.observe(now, waiting, free, last) for now, waiting, free, last in samples]


def test_tasks_waiting_with_a_free_slot_and_none_received_for_the_limit_is_a_stall() -> None:
    watch = StallWatch(limit_s=10)
    verdicts = _run(watch, [(t, 3, True, 0.0) for t in (1, 5, 10, 11, 15)])
    assert verdicts == [False, False, False, True, True]  # clock from the first sample (1): stalled at 11


def test_a_task_received_between_samples_restarts_the_clock() -> None:
    watch = StallWatch(limit_s=10)
    assert _run(watch, [(0, 1, True, -5.0), (6, 1, True, 4.0), (12, 1, True, 4.0), (16, 1, True, 4.0)]) == \
        [False, False, False, True]  # received at 4 (after the clock started at 0): restarted at 6


@pytest.mark.parametrize("interruption", [(0, True), (None, True), (2, False)],
                         ids=["queue empty", "broker unreadable", "worker busy"])
def test_an_empty_queue_an_unreadable_broker_or_a_busy_worker_gives_no_verdict_and_restarts_the_clock(
        interruption: tuple[int | None, bool]) -> None:
    watch = StallWatch(limit_s=10)
    waiting, free = interruption
    samples = [(0, 2, True, -1.0), (9, waiting, free, -1.0), (12, 2, True, -1.0), (21, 2, True, -1.0),
               (22, 2, True, -1.0)]
    assert _run(watch, samples) == [False, False, False, False, True]


def test_the_way_out_asks_the_worker_loop_to_stop_then_ends_the_process_if_it_cannot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_watchdog, "EXIT_GRACE_SECONDS", 0.05)
    monkeypatch.setattr(worker_state, "should_stop", None)
    exited = threading.Event()
    codes: list[int] = []

    def hard_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    stop_stalled_worker(4, ["q"], 60, hard_exit=hard_exit)
    assert worker_state.should_stop == EXIT_CODE == 75
    assert exited.wait(5) and codes == [75]


def test_the_setting_is_off_at_zero_and_at_least_five_seconds_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().worker_stall_exit_seconds == 60
    assert Settings(worker_stall_exit_seconds=0).worker_stall_exit_seconds == 0
    for bad in (-1, 4.9, 86_401):
        with pytest.raises(ValueError, match="worker_stall_exit_seconds"):
            Settings(worker_stall_exit_seconds=bad)
    monkeypatch.setenv("WORKER_STALL_EXIT_SECONDS", "30")
    assert Settings.from_env().worker_stall_exit_seconds == 30
