"""Real Celery worker processes and a cuttable TCP path to Postgres, for the sync tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from sqlalchemy.engine import make_url

from inventory.config import Settings
from sync.app import make_celery

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll until condition() is truthy; fail with a clear message at the timeout (never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class CeleryWorker:
    """`celery -A sync.app worker --pool=solo` on a per-test queue and key prefix; killable by pid."""

    def __init__(self, tmp_path: Path, name: str, env: dict[str, str]) -> None:
        self.log_path = tmp_path / f"{name}.log"
        self.name, self.env = name, env
        self.proc: subprocess.Popen[bytes] | None = None

    ready_marker = b" ready."
    app = "sync.app"

    def command(self) -> list[str]:
        return ["worker", "--pool=solo", "-Q", self.env["CELERY_QUEUE"], "-n", f"{self.name}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]

    def start(self) -> "CeleryWorker":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            # --quiet: no start-up banner, so every line the process writes is a JSON log line (sync/logs.py)
            [sys.executable, "-m", "celery", "-A", self.app, "--quiet", *self.command()],
            cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends it and every child it forked
        )
        log.close()
        wait_for(lambda: self.ready_marker in self.log_path.read_bytes() or self.proc.poll() is not None, 60)
        assert self.proc.poll() is None, self.log_path.read_text()
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        _signal_group(self.proc, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.proc, signal.SIGKILL)  # whatever of the group is still there (pool children)
        self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        """Every complete line of the log as a JSON object (sync/logs.py); a line that is not one fails."""
        text = self.log()
        lines = text.splitlines()
        if not text.endswith("\n"):
            lines = lines[:-1]  # still being written
        parsed = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                raise AssertionError(f"{self.name}: line {number} is not JSON: {line!r}") from None
            assert isinstance(record, dict), line
            parsed.append(record)
        return parsed


class CeleryBeat(CeleryWorker):
    """`celery -A sync.app beat` with the redbeat scheduler (its lock allows one active beat)."""

    ready_marker = b"beat: Starting"

    def command(self) -> list[str]:
        return ["beat", "-l", "DEBUG", "--pidfile=", "-s", str(self.log_path.with_suffix(".schedule"))]


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def worker_env(settings: Settings, database_url: str, **extra: Any) -> dict[str, str]:
    """Environment for a worker process serving this test's prefix, queue and schema."""
    env = {"REDIS_URL": settings.redis_url, "DATABASE_URL": database_url, "KEY_PREFIX": settings.key_prefix,
           "CELERY_QUEUE": settings.celery_queue, "PERSIST_CLAIM_IDLE_SECONDS": "1", "LOG_LEVEL": "INFO"}
    if settings.celery_broker_url:  # a cluster deployment's single-server broker (tests/conftest.py settings)
        env["CELERY_BROKER_URL"] = settings.celery_broker_url
    env.update({k.upper(): str(v) for k, v in extra.items()})
    return env


RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def require_rabbitmq(url: str = RABBITMQ_URL) -> None:
    """Fail (CI) or skip the test when no RabbitMQ answers at url, as for the other servers."""
    from kombu import Connection

    from tests.conftest import server_unavailable

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as error:  # noqa: BLE001 - any failure means the broker is not there
        server_unavailable("RabbitMQ", error)


def send(settings: Settings, task: str, **kwargs: Any) -> None:
    """Publish one task to the test's queue, as beat or the API would."""
    app = make_celery(settings)
    try:
        app.send_task(task, kwargs=kwargs, queue=settings.celery_queue)
    finally:
        app.close()


class TcpProxy:
    """A TCP path to a server that a test can cut (connections dropped, new ones refused) and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.closed = False
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url_for(self, database_url: str) -> str:
        """database_url going through this proxy (same database, user and options)."""
        return make_url(database_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def _accept(self) -> None:
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
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Database unreachable: drop every open connection and refuse new ones."""
        self.up.clear()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()
