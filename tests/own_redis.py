"""A private redis-server on a free port, for tests that stall (SIGSTOP), flush or restart it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import redis

from tests.celery_workers import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """`redis-server` without persistence in its own process group; never the shared server."""

    def __init__(self, tmp_path: Path, *, snapshots: bool = False) -> None:
        # snapshots: an RDB file in its own directory, written by SAVE and loaded at start (restart tests)
        self.data_dir = tmp_path / "redis-data" if snapshots else None
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = tmp_path / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=5)

    def start(self) -> "OwnRedis":
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        log = open(self.log_path, "ab")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.data_dir is not None:
            self.data_dir.mkdir(exist_ok=True)
            args += ["--dir", str(self.data_dir), "--dbfilename", "dump.rdb"]
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_for(self._answers, 20, interval=0.05)
        return self

    def _answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def pause(self) -> None:
        """Stall the server: connections stay open, nothing is answered (a hung or failing-over primary)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def snapshot(self) -> bytes:
        """SAVE now; the RDB file's bytes (for `restart_from`)."""
        assert self.data_dir is not None, "started without snapshots"
        self.client.save()
        return (self.data_dir / "dump.rdb").read_bytes()

    def restart_from(self, rdb: bytes) -> None:
        """Kill the server and start it again, on the same port, from an earlier snapshot."""
        assert self.data_dir is not None and self.proc is not None, "started without snapshots"
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        (self.data_dir / "dump.rdb").write_bytes(rdb)
        self.start()

    def stop(self) -> None:
        self.client.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()  # a stopped process would not act on SIGTERM
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
