"""api/worker.py: the coalesced response puts the same bytes on the wire as gunicorn's, in fewer writes."""

from __future__ import annotations

import re
import socket
from typing import Any, Iterator

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from api.serving import gunicorn_settings
from api.worker import CoalescedResponse, GeventWorker
from inventory.config import Settings

DATE = re.compile(rb"Date: [^\r]*\r\n")


class CountingSocket:
    """A socket that counts sendall calls (one call = one write of the response)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.writes = 0

    def sendall(self, data: bytes) -> None:
        self.writes += 1
        self.sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def _answer(response_class: type, request: bytes, status: str, headers: list[tuple[str, str]],
            chunks: list[bytes]) -> tuple[bytes, int]:
    """What `response_class` sends for one request: the raw bytes (Date removed) and the writes made."""
    server, client = socket.socketpair()
    with server, client:
        client.sendall(request)
        cfg = Config()
        req = next(iter(RequestParser(cfg, server, ("127.0.0.1", 40000))))
        counting = CountingSocket(server)
        resp = response_class(req, counting, cfg)
        resp.start_response(status, headers)
        for chunk in chunks:
            resp.write(chunk)
        resp.close()
        server.shutdown(socket.SHUT_WR)
        received = b"".join(iter(lambda: client.recv(65536), b""))
    return DATE.sub(b"", received), counting.writes


POST = b"POST /v1/reservations HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
HEAD = b"HEAD /v1/products HTTP/1.1\r\nHost: x\r\n\r\n"
HTTP10 = b"GET /healthz HTTP/1.0\r\n\r\n"
JSON = [("Content-Type", "application/json"), ("Content-Length", "13"), ("X-Request-ID", "abc")]

CASES = {
    "201 with a length": (POST, "201 Created", JSON, [b'{"data":{}}\r\n']),
    "409 in two chunks": (POST, "409 Conflict", JSON, [b'{"error"', b':{}}\r\n']),
    "chunked stream": (POST, "200 OK", [("Content-Type", "text/plain")], [b"a", b"bc", b""]),
    "empty body first": (POST, "200 OK", JSON, [b"", b'{"data":{}}\r\n']),
    "longer than its length": (POST, "200 OK", [("Content-Length", "2")], [b"abcdef"]),
    "HEAD": (HEAD, "200 OK", JSON, [b'{"data":{}}\r\n']),
    "204": (POST, "204 No Content", [], [b""]),
    "HTTP/1.0 without a length": (HTTP10, "200 OK", [("Content-Type", "text/plain")], [b"ok"]),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[tuple[Any, ...]]:
    yield CASES[request.param]


def test_the_coalesced_response_sends_exactly_what_gunicorn_sends(case: tuple[Any, ...]) -> None:
    ours, _ = _answer(CoalescedResponse, *case)
    theirs, _ = _answer(wsgi.Response, *case)
    assert ours == theirs
    assert ours.startswith(b"HTTP/1.")


def test_a_small_answer_of_known_length_is_one_write_instead_of_two() -> None:
    _, ours = _answer(CoalescedResponse, *CASES["201 with a length"])
    _, theirs = _answer(wsgi.Response, *CASES["201 with a length"])
    assert (ours, theirs) == (1, 2)


def test_the_api_is_served_by_the_coalescing_gevent_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # gunicorn_settings exports it; restored afterwards
    options = gunicorn_settings(Settings(metrics_dir=str(tmp_path)))
    assert options["worker_class"] == "api.worker.GeventWorker"
    from gunicorn.util import load_class

    assert load_class(options["worker_class"]) is GeventWorker
