"""`flashstock worker` / `flashstock beat`: the Celery worker and scheduler of the sync layer (sync/)."""

from __future__ import annotations

import importlib

import click

from cli.common import load_settings


def _celery_app():  # noqa: ANN202 - celery.Celery; imported lazily so the core never imports Celery
    return importlib.import_module("sync.app").app


@click.command()
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@click.option("--pool", default="prefork", show_default=True, type=click.Choice(["prefork", "solo", "threads"]))
def worker(concurrency: int, pool: str) -> None:
    """Run a Celery worker: persists the outbox, expires holds, reconciles, checks recovery."""
    settings = load_settings()
    _celery_app().worker_main(["worker", "-Q", settings.celery_queue, f"--concurrency={concurrency}",
                               f"--pool={pool}", "--without-gossip", "--without-mingle",
                               "-l", settings.log_level])


@click.command()
def beat() -> None:
    """Run the beat scheduler (redbeat: only one of several started ones schedules at a time)."""
    settings = load_settings()
    _celery_app().start(["--quiet", "beat", "-l", settings.log_level, "--pidfile=", "-s", "/tmp/flashstock-beat-schedule"])


COMMANDS = [worker, beat]
