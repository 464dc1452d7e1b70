"""api/worker.py: the gevent worker accepts a burst of waiting connections per loop turn, not one."""

from __future__ import annotations

import socket
from typing import Any

import gevent
import pytest
from gunicorn.util import load_class
from gunicorn.workers import ggevent

from api.serving import gunicorn_settings
from api.worker import ACCEPT_BURST, BurstAcceptServer, GeventWorker
from inventory.config import Settings


def test_max_accept_is_never_set_below_the_burst() -> None:
    server = BurstAcceptServer(("127.0.0.1", 0), handle=lambda *_: None)
    assert server.max_accept == ggevent.StreamServer.max_accept == 100  # one worker: gevent's own default
    server.max_accept = 1  # what gunicorn's gevent worker sets when there is more than one worker
    assert server.max_accept == ACCEPT_BURST
    server.max_accept = 100
    assert server.max_accept == 100


@pytest.mark.parametrize("server_class, accepted", [(BurstAcceptServer, ACCEPT_BURST), (ggevent.StreamServer, 1)])
def test_one_readiness_event_accepts_a_burst_of_waiting_connections(server_class: Any, accepted: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(ACCEPT_BURST + 4)]
    handled: list[Any] = []
    server = server_class(listener, handle=lambda sock, _address: handled.append(sock.close()))
    server.max_accept = 1
    try:
        server.init_socket()
        server._do_read()  # noqa: SLF001 - the readiness callback gevent runs once per loop turn
        gevent.sleep(0)
        assert len(handled) == accepted
    finally:
        for client in clients:
            client.close()
        server.close()


def test_the_api_is_served_by_the_burst_accepting_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # gunicorn_settings exports it; restored afterwards
    options = gunicorn_settings(Settings(metrics_dir=str(tmp_path)))
    assert load_class(options["worker_class"]) is GeventWorker
