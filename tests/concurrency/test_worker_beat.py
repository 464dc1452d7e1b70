"""Two beat processes started: only the one holding the redbeat lock schedules; it hands over on shutdown."""

from __future__ import annotations

from pathlib import Path

from inventory import Settings
from tests.celery_workers import CeleryBeat, wait_for, worker_env

SENT = "Scheduler: Sending due task expire-holds"


def test_of_two_beat_schedulers_only_the_lock_holder_sends_tasks(real_redis, migrated_db_url: str,
                                                                settings: Settings, tmp_path: Path) -> None:
    sync_settings = settings.with_overrides(celery_queue=f"{settings.key_prefix}:q")
    env = worker_env(sync_settings, migrated_db_url, expire_interval_seconds=0.5)
    beats = [CeleryBeat(tmp_path, f"beat{n}", env) for n in range(2)]
    try:
        for beat in beats:
            beat.start()
        holder = wait_for(lambda: next((b for b in beats if b.log().count(SENT) >= 3), None), 60)
        other = beats[1 - beats.index(holder)]
        assert "beat: Acquired lock" in holder.log()
        assert "beat: Acquired lock" not in other.log() and SENT not in other.log()

        holder.stop()  # a clean shutdown releases the lock: the standby takes over

        wait_for(lambda: other.log().count(SENT) >= 1, 60)
        assert "beat: Acquired lock" in other.log()
    finally:
        for beat in beats:
            beat.stop()
