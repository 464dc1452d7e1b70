"""JSON log lines for the worker and beat (structlog), each task's lines carrying its request id.

Celery configures no logging of its own once a `setup_logging` receiver exists (and then leaves
stdout alone too), so every line of the process, Celery's, redbeat's, the core's stdlib loggers and
ours, goes through one structlog ProcessorFormatter and comes out as one JSON object, with the same
keys as the API's lines (`event`, `level`, `timestamp`, `logger`, `request_id`). The worker's start-up
banner (a plain `print`) is turned off here; beat's needs `celery --quiet beat`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from celery import signals

# A custom Celery message header: the X-Request-ID of the call that queued the task.
REQUEST_ID_HEADER = "request_id"

# stdlib records (Celery, redbeat, inventory.*): context first, so a record's own `extra` (the request
# id of the outbox entry it is about) wins over the request id bound for the task.
_FOREIGN = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.ExtraAdder(),
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(level: int | str = "INFO") -> None:
    """Route structlog and every stdlib logger of this process to JSON lines on stdout."""
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    numeric = numeric if isinstance(numeric, int) else logging.INFO
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_FOREIGN,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_FOREIGN,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(default=str)],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)
    logging.captureWarnings(True)  # Python warnings as JSON lines too, not raw text on stderr
    sys.unraisablehook = log_unraisable  # and what Python can only report, not raise


def log_unraisable(unraisable: Any) -> None:
    """An exception Python cannot raise (in a finalizer, a weakref callback) as one JSON line, not as
    "Exception ignored in: ..." and a traceback in raw text: a stop signal that lands inside an import's
    lock callback in beat printed exactly that, and log shippers expect one JSON object per line."""
    try:
        logging.getLogger("python.unraisable").warning(
            "%s: %r", unraisable.err_msg or "Exception ignored in", unraisable.object,
            exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback))
    except Exception:  # noqa: BLE001 - logging already torn down (interpreter exit): Python's own report
        sys.__unraisablehook__(unraisable)


def current_request_id() -> str:
    """The request id bound for this context's log lines ('' when none)."""
    return str(structlog.contextvars.get_contextvars().get("request_id", ""))


def task_headers(request_id: str | None = None) -> dict[str, str] | None:
    """Message headers that hand a request id (default: the current one) to the task it queues."""
    request_id = current_request_id() if request_id is None else request_id
    return {REQUEST_ID_HEADER: request_id} if request_id else None


@signals.setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Replace Celery's logging setup (worker and beat) with ours."""
    configure_logging(loglevel or "INFO")


@signals.celeryd_init.connect
def _early_worker_logging(instance: Any = None, options: dict[str, Any] | None = None, **_: Any) -> None:
    """JSON from the worker's first line: its privilege warning precedes Celery's logging setup."""
    configure_logging((options or {}).get("loglevel") or "INFO")
    if instance is not None:
        instance.quiet = True  # no plain-text banner, whichever command line started the worker


@signals.worker_ready.connect
def _quiet_shutdown_handler(sender: Any = None, **_: Any) -> None:
    """Celery's SIGTERM handler prints 'worker: Warm shutdown' as plain text; log it as JSON instead."""
    from celery.apps import worker as celery_worker

    controller = getattr(sender, "controller", None)
    if controller is not None:
        celery_worker.install_worker_term_handler(controller, verbose=False)


@signals.worker_shutting_down.connect
def _log_shutdown(how: str = "Warm", **_: Any) -> None:
    logging.getLogger("celery.apps.worker").info("worker: %s shutdown (MainProcess)", how)


@signals.task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Every line logged while a task runs names it, and the request that queued it, if any."""
    structlog.contextvars.clear_contextvars()
    fields: dict[str, Any] = {"task": getattr(task, "name", None), "task_id": task_id}
    request = getattr(task, "request", None)
    headers = getattr(request, "headers", None) or {}
    request_id = getattr(request, REQUEST_ID_HEADER, None) or headers.get(REQUEST_ID_HEADER)
    if request_id:
        fields["request_id"] = str(request_id)
    structlog.contextvars.bind_contextvars(**fields)


@signals.task_postrun.connect
def _unbind_task(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()
