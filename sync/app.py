"""The Celery app, configured from the same Settings as everything else (broker: Redis or RabbitMQ).

Run: celery -A sync.app --quiet worker -Q "$CELERY_QUEUE"   and   celery -A sync.app --quiet beat
(--quiet: no start-up banner, so every stdout line is a JSON log line; see sync/logs.py)
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from inventory.config import Settings
from sync import logs  # noqa: F401 - connects the JSON logging and request-id signal handlers
from sync.consumer_watchdog import ConsumerWatchdog
from sync.recovery_timer import RecoveryTimer

TASKS = "sync.tasks"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings: JSON only, no result backend, late acks, one redbeat scheduler, the beat schedule."""
    broker = settings.broker_url
    prefix = settings.key_prefix
    config: dict[str, Any] = dict(
        broker_url=broker,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_default_queue=settings.celery_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=False,
        worker_enable_remote_control=False,
        timezone="UTC",
        enable_utc=True,
        beat_scheduler="sync.beat.ResilientScheduler",
        redbeat_redis_url=redbeat_url(settings),
        # Bounded waits: a stalled or vanished Redis fails a tick (retried a second later) instead of hanging it.
        redbeat_redis_options={"socket_timeout": settings.redis_timeout_seconds,
                               "socket_connect_timeout": settings.redis_timeout_seconds},
        redbeat_key_prefix=f"{prefix}:redbeat",
        redbeat_lock_key=f"{prefix}:redbeat::lock",
        redbeat_lock_timeout=max(30, int(4 * settings.expire_interval_seconds)),
        beat_max_loop_interval=min(5.0, settings.expire_interval_seconds),
        beat_schedule=beat_schedule(settings),
    )
    if broker.startswith(("redis://", "rediss://", "unix://")):
        # Every broker key under our prefix: several deployments (or test runs) can share one Redis.
        config["broker_transport_options"] = {"global_keyprefix": f"{prefix}:celery:",
                                              "visibility_timeout": settings.broker_visibility_timeout_seconds}
    return config


def redbeat_url(settings: Settings) -> str:
    """Where redbeat keeps its schedule and lock: the inventory's Redis, or on a cluster the broker's.

    redbeat's schedule is a zset plus one hash per entry written in multi-key MULTI pipelines, which a
    cluster refuses across slots (CROSSSLOT); its `cluster` option does not change those pipelines. A
    cluster deployment already names a single-server Redis broker (Settings.broker_url), so beat's few
    keys live there, under the same prefix.
    """
    if not settings.redis_cluster:
        return settings.redis_url
    broker = settings.broker_url
    # A non-Redis broker (RabbitMQ) leaves the cluster URL here: workers do not need redbeat, and beat
    # refuses to start on it with a clear message (sync/beat.py).
    return broker if broker.startswith(("redis://", "rediss://", "unix://")) else settings.redis_url


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Periodic tasks; each message expires after its interval so a stopped worker does not find a pile."""

    def every(task: str, seconds: float, **kwargs: Any) -> dict[str, Any]:
        return {"task": task, "schedule": seconds, "kwargs": kwargs,
                "options": {"queue": settings.celery_queue, "expires": max(seconds, 1.0)}}

    return {
        "persist-outbox": every("flashstock.persist_outbox", settings.persist_interval_seconds),
        "expire-holds": every("flashstock.expire_holds", settings.expire_interval_seconds),
        "reconcile-dirty": every("flashstock.reconcile", settings.reconcile_interval_seconds, full=False),
        "reconcile-full": every("flashstock.reconcile", max(3600.0, settings.reconcile_interval_seconds), full=True),
        "recovery-check": every("flashstock.recovery_check", settings.recovery_interval_seconds),
    }


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app for these settings (default: from the environment)."""
    app = Celery("flashstock", include=[TASKS])
    app.conf.update(celery_config(settings or Settings.from_env()))
    app.steps["worker"].add(RecoveryTimer)
    app.steps["worker"].add(ConsumerWatchdog)
    return app


app = make_celery()
