"""Request ids, structured JSON logs (structlog + contextvars) and per-request metrics."""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import time
from datetime import datetime, timezone
from typing import Any

import orjson
import structlog
from flask import Flask, Response, g, request

from api import metrics
from api.turns import PerTurn

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class _StdoutLogger:
    """Writes each rendered line to the current sys.stdout (so test capture and gunicorn both see it).

    No flush per line: a write is a memory copy, a flush a syscall on the hot path; run with
    PYTHONUNBUFFERED=1 where lines must leave the process immediately.
    """

    def msg(self, message: str) -> None:
        sys.stdout.write(message + "\n")

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _json_line(event: dict[str, Any], **options: Any) -> str:
    """One log line; orjson is several times faster than json on this per-request path."""
    return orjson.dumps(event, default=options.get("default")).decode()


_request_lines = {"on": True}  # whether the per-request line is written (LOG_LEVEL at INFO or below)


class RequestLines(PerTurn):
    """Where the per-request lines go: straight to stdout, or gathered and written once per turn of an
    event loop whose server asked for that (api/worker.py does, for gevent's loop).

    Each line used to be its own write system call (stdout is unbuffered wherever PYTHONUNBUFFERED is
    set, as in the Docker image). Gathered, the answers of one loop turn share one write, made when the
    turn's greenlets have all run, before the worker next waits for I/O: a line still leaves the process
    within the turn that answered its request, but a worker killed mid-turn loses that turn's lines.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[bytes] = []

    def write(self, line: bytes) -> None:
        """Write one line now, or with the rest of this loop turn's."""
        if self.defer():
            self._pending.append(line)
        else:
            sys.stdout.write(line.decode())

    def flush(self) -> None:
        """Write whatever lines are waiting, in one write."""
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            sys.stdout.write(b"".join(lines).decode())
        except (OSError, ValueError):  # stdout closed or gone: a log line is not worth a failed request
            pass


request_lines = RequestLines()
atexit.register(request_lines.flush)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines for structlog and stdlib loggers alike, each with the request id when in a request."""
    numeric = logging.getLevelName(level.upper())
    numeric = numeric if isinstance(numeric, int) else logging.INFO
    _request_lines["on"] = numeric <= logging.INFO
    structlog.configure(
        processors=[*_SHARED, structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(serializer=_json_line)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *_: _StdoutLogger(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=structlog.processors.JSONRenderer(),
        foreign_pre_chain=[*_SHARED, structlog.stdlib.add_logger_name],
    ))
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_flashstock", False)]
    handler._flashstock = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)


log = structlog.get_logger("flashstock.api")


def request_id_for(given_request_id: str | None) -> str:
    """The caller's X-Request-ID if well-formed, else a new one."""
    ok = given_request_id and _REQUEST_ID.fullmatch(given_request_id)
    return given_request_id if ok else os.urandom(16).hex()  # type: ignore[return-value] # as random as uuid4().hex


def begin(given_request_id: str | None) -> str:
    """Start a request's log context, dropping whatever an earlier request left in it."""
    request_id = request_id_for(given_request_id)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return request_id


def current_request_id() -> str:
    """The request id bound for this request's log lines ('' outside a request)."""
    return str(structlog.contextvars.get_contextvars().get("request_id", ""))


def finish(method: str, endpoint: str, path: str, status: int, seconds: float,
           remote_addr: str | None, error_code: str | None, request_id: str) -> None:
    """Count the request in the metrics and write its one log line.

    The line is the one `log.info("request", ...)` renders through the configured processors (same
    keys, order and format; tests/api/test_ops.py compares the two), built directly: at a sold-out
    stampede's rate the processor chain was half of a cached answer's CPU (BENCHMARKS.md).
    """
    metrics.observe_request(method, endpoint, status, seconds)
    if not _request_lines["on"]:
        return
    line: dict[str, Any] = {"method": method, "path": path, "status": status,
                            "duration_ms": round(seconds * 1000, 3), "remote_addr": remote_addr}
    if error_code:
        line["error"] = error_code
    line["event"] = "request"
    line["request_id"] = request_id
    line["level"] = "info"
    line["timestamp"] = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    request_lines.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))


def _begin() -> None:
    g.request_id = begin(request.headers.get(REQUEST_ID_HEADER))
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id is None:  # a failure before our first hook ran
        _begin()
        request_id = g.request_id
    response.headers[REQUEST_ID_HEADER] = request_id
    rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
    finish(request.method, rule, request.path, response.status_code, time.perf_counter() - g.started,
           request.remote_addr, g.get("error_code"), request_id)
    return response


def _clear(_: BaseException | None = None) -> None:
    structlog.contextvars.clear_contextvars()


def init_app(app: Flask) -> None:
    """Hooks that run before every other before_request and after every after_request."""
    app.before_request_funcs.setdefault(None, []).insert(0, _begin)
    app.after_request(_finish)
    app.teardown_request(_clear)
