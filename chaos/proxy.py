"""The TCP path to PostgreSQL that the stack uses: cut (tests/celery_workers.TcpProxy) or frozen after a COMMIT."""

from __future__ import annotations

import socket
import threading
import time

from tests.celery_workers import TcpProxy

FREEZE_LIMIT_S = 60.0  # a frozen reply is released after this even if nobody thaws it


class FaultyProxy(TcpProxy):
    """TcpProxy that can also hold back PostgreSQL's answer to the next COMMIT (committed, not yet known)."""

    def __init__(self, host: str, port: int) -> None:
        self.arm_commit = threading.Event()
        self.frozen = threading.Event()
        self.thawed = threading.Event()
        self._upstreams: set[int] = set()
        self._held_upstream: socket.socket | None = None
        self._held_client_port: int | None = None
        super().__init__(host, port)

    def _accept(self) -> None:
        # Same as TcpProxy._accept, remembering which side of each pair is the server.
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
                self._upstreams.add(id(upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def freeze_next_commit(self) -> None:
        """The next COMMIT a client sends reaches PostgreSQL; its answer is held until thaw()."""
        self.thawed.clear()
        self.frozen.clear()
        self.arm_commit.set()

    def held_client_port(self) -> int | None:
        """The client-side port of the connection whose COMMIT answer is held (to find its process)."""
        return self._held_client_port

    def thaw(self) -> None:
        self.arm_commit.clear()
        self.thawed.set()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:  # type: ignore[override]
        from_server = id(source) in self._upstreams
        try:
            while data := source.recv(65536):
                if not from_server and self.arm_commit.is_set() and b"COMMIT" in data:
                    self.arm_commit.clear()
                    self._held_upstream = sink  # this connection's answers stop; the COMMIT itself goes through
                    self._held_client_port = source.getpeername()[1]
                    self.frozen.set()
                if from_server and self.frozen.is_set() and self._held_upstream is source:
                    deadline = time.monotonic() + FREEZE_LIMIT_S
                    while not self.thawed.wait(0.1) and time.monotonic() < deadline and not self.closed:
                        pass
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
