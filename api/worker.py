"""gunicorn's gevent pywsgi worker, with gunicorn's keep-alive limit and connections accepted in bursts.

Why pywsgi: gunicorn's plain gevent worker parses each request with gunicorn's own Python parser.
pywsgi reads request fields through the email package's MIME parser, so this handler reads them with
api/request_head.py instead, and it builds no access-log record when no access log is written. Measured
(BENCHMARKS.md, "Issue 13, sixth pass"): a cached sold-out answer, most of a sale's traffic, costs
173-182 µs of server CPU instead of 271-319 µs on the plain gevent worker.

What this module adds to pywsgi: what the plain gevent worker did and pywsgi does not, and what neither did:
- **Keep-alive limit**: a connection that sends no request for `keepalive` seconds is closed, as
  gunicorn's gevent worker does, instead of being held open for ever.
- **One send per answer**: both servers send a response's head and its body in two writes, so every
  small answer cost two send syscalls and two TCP segments; this handler sends them in one, and without
  gevent's sendall, which asks the kernel for the socket's buffer size (a getsockopt call) every time.
- **One head timer per connection**, started and cancelled for each request, not a new one per request.
- **One log write and one metrics update per loop turn**: the request lines and metric updates of the
  answers given in one turn of the event loop are written together (api/observability.py RequestLines,
  api/metrics.py TurnUpdates), not one write system call and 4-5 locked mmap writes per answer.
- **Accepting in bursts**: with more than one worker, a server that knows it is one of several accepts
  one connection per turn of its event loop (to spread a burst of connections over the workers). When
  the workers are saturated a turn runs every ready request first, and the listen queue drains at ~30
  connections per second: 256 storefront connections opened at the start of a sale waited up to 6 s for
  their first answer ("Issue 13, fourth pass"). This server accepts up to ACCEPT_BURST per turn, which
  still leaves the other workers their share of a burst.
"""

from __future__ import annotations

import socket
import time
from typing import Any
from wsgiref.handlers import format_date_time

import gevent
from greenlet import getcurrent
from gunicorn.workers import ggevent

from api import metrics
from api.observability import request_lines
from api.request_head import RequestHead, environ_fields, read_head

ACCEPT_BURST = 16
ONE_SEND_MAX = 64 * 1024  # a larger first body chunk goes in its own send, as pywsgi does (no big copy)
_date = {"second": -1, "value": b""}


def http_date() -> bytes:
    """The Date header's value, formatted once per second rather than once per answer."""
    second = int(time.time())
    if second != _date["second"]:
        _date["second"], _date["value"] = second, format_date_time(second).encode("latin-1")
    return _date["value"]


class HeadTimeout(ValueError):
    """No complete request head arrived within the keep-alive (a ValueError: pywsgi answers it with 400)."""


class KeepAliveHandler(ggevent.PyWSGIHandler):
    """gunicorn's pywsgi handler that closes a connection whose next request head takes longer than the
    server's `keepalive` seconds to arrive, as gunicorn's gevent worker does."""

    _head_timer: Any = None  # the connection's libev timer, while it exists

    def MessageClass(self, rfile: Any, *_: Any) -> RequestHead:  # noqa: N802 - pywsgi's name
        return read_head(rfile)

    def _headers(self) -> Any:
        return environ_fields(self.headers)

    def _check_http_version(self) -> bool:
        return self.request_version == "HTTP/1.1" or super()._check_http_version()  # parsed only if not 1.1

    def log_request(self) -> None:
        if self.server.log.access_log_enabled:  # skip building the access record nobody writes
            super().log_request()

    def handle(self) -> None:
        try:
            super().handle()
        finally:
            if self._head_timer is not None:
                self._head_timer.close()
                self._head_timer = None

    def handle_one_request(self) -> Any:
        try:
            return super().handle_one_request()
        finally:
            self._stop_head_timer()

    def read_requestline(self) -> str | None:
        keepalive = self.server.keepalive
        if keepalive > 0:
            if self._head_timer is None:  # one timer per connection: its one greenlet reads every head
                self._head_timer = gevent.get_hub().loop.timer(keepalive, keepalive)
            # `again` counts the full keep-alive from now (a plain restart would count on from what was
            # left when it stopped); when it fires, the hub raises HeadTimeout in this greenlet.
            self._head_timer.again(getcurrent().throw, HeadTimeout("request head too slow"))
        try:
            return super().read_requestline()
        except HeadTimeout:
            return None  # idle for the keep-alive: the connection is closed

    def read_request(self, raw_requestline: str) -> Any:
        try:
            parsed = super().read_request(raw_requestline)  # the headers: still under the head's timer
        finally:
            self._stop_head_timer()  # never while the application runs
        if self.server.keepalive <= 0:
            self.close_connection = True  # keep-alive off: one request per connection, as in gunicorn
        return parsed

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.stop()

    def finalize_headers(self) -> None:
        if self.provided_date is None:
            self.provided_date = http_date()
            self.response_headers.append((b"Date", self.provided_date))
        super().finalize_headers()
        # pywsgi says "Connection: close" only to HTTP/1.0 clients; an HTTP/1.1 client is told as well.
        if self.close_connection and not any(name.lower() == b"connection" for name, _ in self.response_headers):
            self.response_headers.append((b"Connection", b"close"))

    def _write_with_headers(self, data: bytes) -> None:
        """The status line, the headers and the first body chunk in one send (pywsgi sends the head alone)."""
        self.headers_sent = True
        self.finalize_headers()
        towrite = bytearray(b"HTTP/1.1 ")
        towrite += self.status
        towrite += b"\r\n"
        for name, value in self.response_headers:
            towrite += name
            towrite += b": "
            towrite += value
            towrite += b"\r\n"
        towrite += b"\r\n"
        if self.response_use_chunked or len(data) > ONE_SEND_MAX:
            self._sendall(towrite)
            self._write(data)
            return
        towrite += data
        self._sendall(towrite)

    def _sendall(self, data: bytes | bytearray | memoryview) -> None:
        """pywsgi's _sendall, trying one plain send first: a small answer fits the socket's buffer."""
        try:
            sent = self.socket.send(data)
            if sent < len(data):
                self.socket.sendall(memoryview(data)[sent:])
        except socket.error as ex:
            self.status = f"socket error: {ex}"
            if self.code > 0:
                self.code = -self.code
            raise
        self.response_length += len(data)


class BurstAcceptServer(ggevent.PyWSGIServer):
    """gunicorn's pywsgi server, accepting up to ACCEPT_BURST connections per loop turn, never just one."""

    keepalive: float = 5.0

    def set_max_accept(self) -> None:
        # pywsgi sets max_accept = 1 when wsgi.multiprocess is set (gunicorn sets it for > 1 worker).
        self.max_accept = ACCEPT_BURST if self.environ.get("wsgi.multiprocess") else type(self).max_accept


class PyWSGIWorker(ggevent.GeventPyWSGIWorker):
    """gunicorn's gevent pywsgi worker, serving through BurstAcceptServer and KeepAliveHandler."""

    server_class = BurstAcceptServer
    wsgi_handler = KeepAliveHandler

    def run(self) -> Any:
        # One server class per worker process, so the class attribute is this worker's setting.
        BurstAcceptServer.keepalive = float(self.cfg.keepalive)
        at_end_of_turn = gevent.get_hub().loop.run_callback
        request_lines.gather_per_turn(at_end_of_turn)
        metrics.updates.gather_per_turn(at_end_of_turn)
        try:
            return super().run()
        finally:
            request_lines.gather_per_turn(None)
            metrics.updates.gather_per_turn(None)
