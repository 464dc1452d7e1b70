"""Start and stop the processes a benchmark needs, by pid, including on failure or Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Sequence


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    """Block until something accepts on 127.0.0.1:port; fail fast if proc exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


class ProcessGroup:
    """Processes started by this run; each gets its own session so its children die with it."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._procs: list[tuple[str, subprocess.Popen, IO[bytes]]] = []

    def start(self, name: str, argv: Sequence[str], cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        """Spawn argv with stdout/stderr to log_dir/name.log (env: extra variables on top of ours)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env={**os.environ, **env} if env else None, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._procs.append((name, proc, log))
        return proc

    def stop(self, proc: subprocess.Popen, grace_s: float = 10.0) -> None:
        """SIGTERM the process group led by proc.pid, SIGKILL it after grace_s."""
        entry = next((e for e in self._procs if e[1] is proc), None)
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Workers of a dead master may linger in the group; make sure they go too.
        _signal_group(proc.pid, signal.SIGKILL)
        if entry is not None:
            entry[2].close()
            self._procs.remove(entry)

    def stop_all(self) -> None:
        """Stop everything still registered, newest first."""
        for _, proc, _ in reversed(list(self._procs)):
            self.stop(proc)

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit and make SIGINT raise, so `finally`/`with` cleanup runs."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    # A shell starting us in the background may have set SIGINT to ignored; Ctrl-C must still clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)
