"""gunicorn's gevent worker, sending a response's head and its first body chunk in one write.

gunicorn's HTTP/1 Response writes the status line and headers with one `sendall` and then the body
with another. For the small JSON answers this API gives (a reservation, a sold-out refusal) that is
two syscalls and two loopback or network segments per answer where one does; at flash-sale rates
the second `send` was the largest single cost left outside the app (BENCHMARKS.md, "Issue 13,
fourth pass"). The bytes on the wire are unchanged (tests/api/test_worker.py compares them).
"""

from __future__ import annotations

from typing import Any

from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.workers.ggevent import GeventWorker as _GeventWorker


class CoalescedResponse(wsgi.Response):
    """A Response whose head goes out with the first chunk of a body of known length."""

    def write(self, arg: Any) -> None:
        if (self.headers_sent or self.chunked or self._omits_body or not isinstance(arg, bytes) or not arg
                or self.response_length is None or len(arg) > self.response_length):
            return super().write(arg)  # streaming, empty, no-body or oversized: gunicorn's own path
        util.write(self.sock, self._head() + arg)
        self.headers_sent = True
        self.sent += len(arg)
        return None

    def _head(self) -> bytes:
        """The head exactly as gunicorn's Response.send_headers builds it."""
        lines = self.default_headers()
        lines.extend(["%s: %s\r\n" % (k, v) for k, v in self.headers])  # noqa: UP031 - gunicorn's form
        return util.to_bytestring("%s\r\n" % "".join(lines), "latin-1")  # noqa: UP031


class GeventWorker(_GeventWorker):
    """gunicorn's gevent worker with CoalescedResponse for HTTP/1 answers."""

    def init_process(self) -> None:
        # wsgi.create() builds gunicorn.http.wsgi.Response unless told otherwise, and the worker calls
        # it without a response class for HTTP/1; this worker process serves nothing else.
        wsgi.Response = CoalescedResponse  # type: ignore[misc]
        super().init_process()
