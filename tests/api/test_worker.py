"""api/worker.py: the pywsgi worker accepts a burst of waiting connections per loop turn, not one, and keeps
gunicorn's keep-alive limit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator
from wsgiref.handlers import format_date_time

import gevent
import pytest
from gunicorn.util import load_class
from gunicorn.workers import ggevent

from api.serving import gunicorn_settings
from api import request_head, worker
from api.worker import ACCEPT_BURST, ONE_SEND_MAX, BurstAcceptServer, KeepAliveHandler, PyWSGIWorker
from inventory.config import Settings
from tests.api.constant_app import app as _app
from tests.helpers import stop_process
from tests.own_redis import free_port

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.api.constant_app:app"
REQUEST = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.mark.parametrize("multiprocess, expected", [(True, ACCEPT_BURST), (False, 100)])
def test_max_accept_is_the_burst_with_several_workers_and_gevents_default_with_one(multiprocess, expected):
    server = BurstAcceptServer(("127.0.0.1", 0), application=_app, environ={"wsgi.multiprocess": multiprocess})
    assert server.max_accept == expected
    # pywsgi's own server accepts one connection per turn as soon as it is one of several processes
    plain = ggevent.PyWSGIServer(("127.0.0.1", 0), application=_app, environ={"wsgi.multiprocess": True})
    assert plain.max_accept == 1


@pytest.mark.parametrize("server_class, accepted", [(BurstAcceptServer, ACCEPT_BURST), (ggevent.PyWSGIServer, 1)])
def test_one_readiness_event_accepts_a_burst_of_waiting_connections(server_class: Any, accepted: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(ACCEPT_BURST + 4)]
    handled: list[Any] = []

    class Counting(server_class):  # type: ignore[misc, valid-type]
        def handle(self, sock: socket.socket, _address: Any) -> None:
            handled.append(sock.close())

    server = Counting(listener, application=_app, environ={"wsgi.multiprocess": True})
    try:
        server.init_socket()
        server._do_read()  # noqa: SLF001 - the readiness callback gevent runs once per loop turn
        gevent.sleep(0)
        assert len(handled) == accepted
    finally:
        for client in clients:
            client.close()
        server.close()


def test_the_api_is_served_by_the_pywsgi_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # gunicorn_settings exports it; restored afterwards
    options = gunicorn_settings(Settings(metrics_dir=str(tmp_path)))
    assert load_class(options["worker_class"]) is PyWSGIWorker


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """gunicorn with api.worker.PyWSGIWorker (2 workers) for a given keep-alive (one per value, shared by
    the module's tests); gives its port."""
    servers: list[subprocess.Popen[bytes]] = []
    ports: dict[tuple[int, tuple[str, ...]], int] = {}
    tmp_path = tmp_path_factory.mktemp("gunicorn")

    def start(keepalive: int, *options: str) -> int:
        if (keepalive, options) in ports:
            return ports[keepalive, options]
        port = ports[keepalive, options] = free_port()
        log = tmp_path / f"gunicorn-{port}.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "bench" / "gunicorn_conf.py"), "-w", "2",
             "-k", "api.worker.PyWSGIWorker", "--keep-alive", str(keepalive), "-b", f"127.0.0.1:{port}", *options, APP],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log.open("w"), stderr=subprocess.STDOUT)
        servers.append(server)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                assert server.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)

    yield start
    for server in servers:
        stop_process(server)


def _answer(connection: socket.socket) -> bytes:
    """One response (head and the 2-byte body) read from a keep-alive connection."""
    data = b""
    while not (b"\r\n\r\n" in data and data.endswith(b"ok")):
        chunk = connection.recv(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def _closed_within(connection: socket.socket, seconds: float) -> bool:
    connection.settimeout(seconds)
    try:
        return connection.recv(4096) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def test_an_idle_connection_is_kept_for_the_keep_alive_and_closed_after_it(serve) -> None:
    port = serve(keepalive=2)
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(REQUEST)
        assert _answer(connection).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)  # idle for less than the keep-alive: the connection still serves
        connection.sendall(REQUEST)
        assert _answer(connection).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert _closed_within(connection, 6.0), "an idle connection outlived the keep-alive"
        assert 1.5 <= time.monotonic() - started <= 4.5


def test_a_connection_that_never_sends_a_request_is_closed_after_the_keep_alive(serve) -> None:
    port = serve(keepalive=1)
    with socket.create_connection(("127.0.0.1", port)) as connection:
        assert _closed_within(connection, 5.0)


def test_a_request_head_that_trickles_in_slower_than_the_keep_alive_is_cut_off(serve) -> None:
    port = serve(keepalive=1)
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /x HTTP/1.1\r\n")
        for _ in range(2):  # headers, but never the blank line that ends them
            time.sleep(0.4)
            connection.sendall(b"X-Slow: 1\r\n")
        started = time.monotonic()
        connection.settimeout(5.0)
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
        assert time.monotonic() - started < 3.0
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer


@pytest.mark.parametrize("bad_line", [b"Host : t", b" folded", b"Content-Length: 3\r\nContent-Length: 4"])
def test_a_malformed_request_head_is_answered_400_and_the_connection_closed(serve, bad_line: bytes) -> None:
    port = serve(keepalive=5)
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\n" + bad_line + b"\r\n\r\nabc")
        connection.settimeout(5.0)
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 400"), answer


def test_keep_alive_zero_answers_one_request_per_connection(serve) -> None:
    port = serve(keepalive=0)
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(REQUEST)
        head = _answer(connection)
        assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
        assert _closed_within(connection, 5.0)


def test_an_access_log_is_still_written_when_one_is_configured(serve, tmp_path: Path) -> None:
    """The handler skips building access records only when gunicorn writes no access log."""
    access_log = tmp_path / "access.log"
    port = serve(5, "--access-logfile", str(access_log))
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(REQUEST.replace(b"/x", b"/logged"))
        assert _answer(connection).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 5
    while b"GET /logged" not in access_log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert b"GET /logged" in access_log.read_bytes()


class _LogOff:
    access_log_enabled = False


def _sends(app: Any, request: bytes) -> list[bytes]:
    """Each send of one answer by KeepAliveHandler to `request`, over a socket pair."""
    sends: list[bytes] = []

    class Recording(KeepAliveHandler):
        def _sendall(self, data: bytes) -> None:
            sends.append(bytes(data))
            super()._sendall(data)

    server_side, client_side = socket.socketpair()
    server = BurstAcceptServer(("127.0.0.1", 0), application=app, environ={})
    server.log = _LogOff()
    try:
        client_side.sendall(request)
        Recording(server_side, ("127.0.0.1", 1), server).handle()
    finally:
        server_side.close()
        client_side.close()
    return sends


def test_an_answer_goes_out_in_one_send_with_its_head():
    (sent,) = _sends(_app, b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b"ok"
    assert head.count(b"\r\nDate: ") == 1 and b"Content-Length: 2" in head


def test_a_chunked_or_large_answer_sends_its_head_first_as_pywsgi_does():
    def chunked(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        yield b"part"

    def large(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", str(ONE_SEND_MAX + 1))])
        return [b"x" * (ONE_SEND_MAX + 1)]

    request = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    head, *rest = _sends(chunked, request)
    assert head.endswith(b"\r\n\r\n") and b"Transfer-Encoding: chunked" in head
    assert rest == [b"4\r\npart\r\n", b"0\r\n\r\n"]
    head, body = _sends(large, request)
    assert head.endswith(b"\r\n\r\n") and body == b"x" * (ONE_SEND_MAX + 1)


def test_the_date_header_is_the_current_second_formatted_once_per_second(monkeypatch):
    now = [1_800_000_000.2]
    monkeypatch.setattr(worker.time, "time", lambda: now[0])
    first = worker.http_date()
    assert first == format_date_time(1_800_000_000).encode() and worker.http_date() is first
    now[0] += 1
    assert worker.http_date() == format_date_time(1_800_000_001).encode()


class _TakesSeven:
    """A socket whose send takes at most 7 bytes, as a full kernel buffer would."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.calls = sock, []

    def send(self, data: Any) -> int:
        self.calls.append("send")
        return self.sock.send(bytes(data[:7]))

    def sendall(self, data: Any) -> None:
        self.calls.append("sendall")
        self.sock.sendall(data)


def test_an_answer_the_socket_takes_in_part_is_finished_by_sendall():
    server_side, client_side = socket.socketpair()
    handler = KeepAliveHandler.__new__(KeepAliveHandler)
    handler.socket, handler.code, handler.response_length = _TakesSeven(server_side), 200, 0
    try:
        handler._sendall(bytearray(b"HTTP/1.1 200 OK\r\n\r\nok"))
        handler._sendall(b"tail")
        client_side.settimeout(5.0)
        received = b""
        while len(received) < 25:
            received += client_side.recv(4096)
        assert received == b"HTTP/1.1 200 OK\r\n\r\noktail"
    finally:
        server_side.close()
        client_side.close()
    assert handler.socket.calls == ["send", "sendall", "send"] and handler.response_length == 25


def _echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    answer = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {environ.get('HTTP_X_A', '-')[:8]} ".encode() + body
    start_response("200 OK", [("Content-Length", str(len(answer)))])
    return [answer]


def test_pipelined_requests_and_a_head_longer_than_the_read_buffer_are_each_read_whole(monkeypatch):
    """Heads in the read buffer take the regular-expression reader, the long one the line-by-line reader;
    each leaves exactly its body and the next request behind."""
    by_lines = []
    monkeypatch.setattr(request_head, "_read_head_by_lines",
                        lambda rfile, read=request_head._read_head_by_lines: by_lines.append(1) or read(rfile))
    long_value = b"v" * 10_000  # more than the reader's 8 KiB buffer: the head is not all buffered
    requests = (b"POST /a HTTP/1.1\r\nHost: t\r\nX-A: one\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n"
                b"POST /c HTTP/1.1\r\nHost: t\r\nX-A: " + long_value + b"\r\nContent-Length: 4\r\n\r\ndefg"
                b"POST /d HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
    answers = b"".join(_sends(_echo, requests)).split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert [answer.split(b"\r\n\r\n", 1)[1] for answer in answers] == [
        b"POST /a one abc", b"GET /b - ", b"POST /c vvvvvvvv defg", b"POST /d - hi"]
    assert by_lines == [1]
