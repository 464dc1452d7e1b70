"""One scenario's own stack: redis-server with AOF, a PostgreSQL database behind a cuttable proxy, gunicorn,
Celery workers and two beats, each a pid-tracked process group that the harness can kill and restart."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
from psycopg2 import sql

from bench.procs import ProcessGroup, free_port, wait_for_port
from bench.services import admin_conn, pg_dsn
from chaos.proxy import FaultyProxy
from sync.consumer_watchdog import EXIT_CODE as RESTART_ME

REPO = Path(__file__).resolve().parent.parent
PG_HOST, PG_PORT, PG_USER, PG_ADMIN_DB = "127.0.0.1", 5432, "postgres", "postgres"
PG_BASE_DSN = f"host={PG_HOST} port={PG_PORT} user={PG_USER}"
STOREFRONT_KEY, ADMIN_KEY = "chaos-storefront-key", "chaos-admin-key"
QUEUE = "chaos"
KEY_PREFIX = "chaos"
# everysec as docker-compose deploys it: a kill -9 of redis-server loses nothing (the writes are in the
# page cache); only a kernel crash or power loss could lose up to a second, which no scenario simulates.
APPENDFSYNC = "everysec"
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0


@dataclass
class StackConfig:
    """What differs between scenarios' stacks."""

    api_servers: int = 1
    api_workers: int = 2
    workers: int = 2
    beats: int = 2
    visibility_timeout_s: int = 3600
    skew: str = ""  # a FAKETIME offset (e.g. "+600") for the second API server's host clock
    cluster: bool = False  # the data on a private 3-master Redis Cluster with one replica each (the
                           # scenario's own redis-server stays Celery's broker and beat's lock)


@dataclass
class Spec:
    """How to (re)start one named process."""

    argv: list[str]
    env: dict[str, str]
    marker: bytes = b""
    port: int = 0


@dataclass
class ChaosStack:
    """Everything one scenario runs on; `start()` then `stop()` (always, also on errors)."""

    run_dir: Path
    name: str
    cfg: StackConfig = field(default_factory=StackConfig)

    def __post_init__(self) -> None:
        self.procs = ProcessGroup(self.run_dir / "logs")
        self.live: dict[str, subprocess.Popen] = {}
        self.specs: dict[str, Spec] = {}
        self.killed: set[str] = set()  # exits the harness caused (the rest are crashes)
        self.supervised: list[dict[str, Any]] = []  # processes that exited asking to be restarted, and when
        self.db_name = f"flashstock_chaos_{os.getpid()}_{self.name}"[:63]
        self.db_created = False
        self.proxy: FaultyProxy | None = None
        self.redis_port = free_port()
        self.redis_dir = self.run_dir / "redis"
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.api_ports: list[int] = []
        self._log_offset: dict[str, int] = {}
        self.cluster: Any = None  # tests.own_cluster.OwnCluster when cfg.cluster

    # -- start and stop ------------------------------------------------------------------------------

    def start(self) -> "ChaosStack":
        """Redis, database, proxy, then workers, beats and API servers started together and awaited."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        self.specs["redis"] = Spec(self._redis_argv(), {}, port=self.redis_port)
        self._launch("redis")
        wait_for_port(self.redis_port, 20, self.live["redis"])
        if self.cfg.cluster:
            from tests.own_cluster import OwnCluster

            self.cluster = OwnCluster(self.run_dir / "cluster", masters=3, replicas_per_master=1).start()
        self._create_db()
        self.proxy = FaultyProxy(PG_HOST, PG_PORT)
        env = self.env()
        celery = [sys.executable, "-m", "celery", "-A", "sync.app", "--quiet"]
        for i in range(self.cfg.workers):
            self.specs[f"worker{i}"] = Spec(
                [*celery, "worker", "-Q", QUEUE, "--concurrency", "1", "--without-gossip", "--without-mingle",
                 "-l", "INFO", "-n", f"chaos{i}-{os.getpid()}@%h"], env, b" ready.")
        for i in range(self.cfg.beats):
            self.specs[f"beat{i}"] = Spec([*celery, "beat", "-l", "INFO", "--pidfile=", "-s",
                                           str(self.run_dir / f"beat{i}.schedule")], env, b"beat: Starting")
        for i in range(self.cfg.api_servers):
            port = free_port()
            api_env = dict(env, PROMETHEUS_MULTIPROC_DIR=str(self.run_dir / f"metrics{i}"))
            if i == 1 and self.cfg.skew:
                api_env.update(LD_PRELOAD=FAKETIME_LIB, FAKETIME=self.cfg.skew, FAKETIME_DONT_FAKE_MONOTONIC="1",
                               FAKETIME_NO_CACHE="1")
            self.specs[f"api{i}"] = Spec([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b",
                                          f"127.0.0.1:{port}", "wsgi:app"], api_env, port=port)
            self.api_ports.append(port)
        for name in self.specs:
            if name != "redis":
                self._launch(name)
        for name in self.specs:
            self.await_ready(name)
        return self

    def stop(self) -> None:
        """Every process group we started (stopped ones are woken first), the proxy, and our database."""
        procs = list(self.live.values())
        for proc in procs:  # all at once: a stopped (SIGSTOP) group first has to be woken to act on TERM
            _killpg(proc.pid, signal.SIGCONT)
            _killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.live.clear()
        self.procs.stop_all()  # SIGKILL to whatever of each group is left, logs closed
        if self.proxy is not None:
            self.proxy.close()
        if self.cluster is not None:
            self.cluster.stop()
        self._drop_db()

    def env(self) -> dict[str, str]:
        """The product's settings, all of them environment variables read by inventory.config."""
        assert self.proxy is not None
        broker = f"redis://127.0.0.1:{self.redis_port}/0"
        return {
            "REDIS_URL": self.cluster.url if self.cluster is not None else broker, "CELERY_BROKER_URL": broker,
            "DATABASE_URL": f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.proxy.port}/{self.db_name}",
            "KEY_PREFIX": KEY_PREFIX, "CELERY_QUEUE": QUEUE,
            "STOREFRONT_API_KEYS": STOREFRONT_KEY, "ADMIN_API_KEYS": ADMIN_KEY, "WEBHOOK_SECRET": self.secret,
            "WEB_CONCURRENCY": str(self.cfg.api_workers), "REDIS_TIMEOUT_SECONDS": "2",
            "PERSIST_INTERVAL_SECONDS": "2", "EXPIRE_INTERVAL_SECONDS": "1", "RECONCILE_INTERVAL_SECONDS": "10",
            "RECOVERY_INTERVAL_SECONDS": "5", "PERSIST_CLAIM_IDLE_SECONDS": "5",
            "BROKER_VISIBILITY_TIMEOUT_SECONDS": str(self.cfg.visibility_timeout_s),
            "RATE_LIMIT_RESERVATIONS": "100/second", "LOG_LEVEL": "INFO", "PYTHONPATH": str(REPO),
            "WORKER_STALL_EXIT_SECONDS": "20",  # within the 60 s recovery bound (sync/consumer_watchdog.py)
        }

    @property
    def db_url(self) -> str:
        """The database straight, not through the proxy (the harness's own reads)."""
        return f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.db_name}"

    def redis_client(self) -> Any:
        """The product's data: the scenario's redis-server, or its cluster (a RedisCluster client)."""
        if self.cluster is not None:
            return self.cluster.client()
        return redis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=5, socket_connect_timeout=5)

    # -- processes -----------------------------------------------------------------------------------

    def _launch(self, name: str) -> None:
        spec = self.specs[name]
        log = self.procs.log_dir / f"{name}.log"
        self._log_offset[name] = log.stat().st_size if log.exists() else 0
        self.live[name] = self.procs.start(name, spec.argv, cwd=REPO, env=spec.env)

    def await_ready(self, name: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until the process listens (API, redis) or logged its ready line (worker, beat)."""
        spec, proc = self.specs[name], self.live[name]
        if spec.port:
            wait_for_port(spec.port, timeout_s, proc)
            if name == "redis":
                _until(lambda: _redis_loaded(self.redis_client()), timeout_s, "redis never finished loading")
            return
        log = self.procs.log_dir / f"{name}.log"
        start = self._log_offset.get(name, 0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}")
            if log.exists() and spec.marker in log.read_bytes()[start:]:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{name} not ready after {timeout_s}s; see {log}")

    def pid(self, name: str) -> int:
        return self.live[name].pid

    def kill9(self, name: str) -> None:
        """SIGKILL the whole process group (a Celery worker and its pool child die together)."""
        proc = self.live.pop(name)
        self.killed.add(name)
        _killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.procs.stop(proc, grace_s=1.0)

    def stop_one(self, name: str) -> None:
        """A graceful stop (SIGTERM, then SIGKILL after the grace), as a deploy would; restart() brings it back."""
        proc = self.live.pop(name)
        self.killed.add(name)
        self.procs.stop(proc, grace_s=STOP_GRACE_S)

    def restart(self, name: str, *, wait: bool = True) -> None:
        """Start a killed process again, as a supervisor (systemd, Kubernetes) would."""
        self._launch(name)
        if wait:
            self.await_ready(name)

    def supervise(self) -> None:
        """Start again each process that exited with 75 (a worker whose consumer stalled), as the
        deployment's supervisor does (docker compose `restart: unless-stopped`); any other exit stays a crash."""
        for name, proc in list(self.live.items()):
            if proc.poll() == RESTART_ME:
                self.supervised.append({"process": name, "at": round(time.time(), 1)})
                self._launch(name)

    def signal(self, name: str, sig: int) -> None:
        _killpg(self.live[name].pid, sig)

    def children(self, name: str) -> list[int]:
        """Pids of a process's children (gunicorn's workers, a Celery worker's pool)."""
        try:
            return [c.pid for c in psutil.Process(self.live[name].pid).children()]
        except psutil.NoSuchProcess:
            return []

    def crashed(self) -> dict[str, int]:
        """Processes that exited without the harness killing them: name -> exit status."""
        return {n: p.returncode for n, p in self.live.items() if p.poll() is not None}

    # -- redis files -----------------------------------------------------------------------------------

    def _redis_argv(self) -> list[str]:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found (scripts/services.sh installs it)")
        return [exe, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(self.redis_dir),
                "--appendonly", "yes", "--appendfsync", APPENDFSYNC, "--save", "", "--daemonize", "no",
                "--protected-mode", "no", "--maxclients", "10000", "--aof-load-truncated", "yes"]

    def snapshot_redis(self, into: Path) -> None:
        """Copy the AOF directory as it is now (an older backup to restore later)."""
        shutil.rmtree(into, ignore_errors=True)
        shutil.copytree(self.redis_dir / "appendonlydir", into)

    def restore_redis(self, snapshot: Path) -> None:
        """kill -9 redis-server, put the older AOF back, start it again from that."""
        self.kill9("redis")
        shutil.rmtree(self.redis_dir / "appendonlydir", ignore_errors=True)
        shutil.copytree(snapshot, self.redis_dir / "appendonlydir")
        self.restart("redis")

    # -- database -----------------------------------------------------------------------------------------

    def _create_db(self) -> None:
        from inventory.migrations import upgrade

        with admin_conn(PG_BASE_DSN, PG_ADMIN_DB) as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.db_name)))
        self.db_created = True  # from here on it is ours to drop
        upgrade(self.db_url)

    def _drop_db(self) -> None:
        if not self.db_created:
            return
        with admin_conn(PG_BASE_DSN, PG_ADMIN_DB) as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.db_name)))
        self.db_created = False

    def pg_dsn(self) -> str:
        return pg_dsn(PG_BASE_DSN, self.db_name)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _redis_loaded(client: redis.Redis) -> bool:
    try:
        return client.ping() and int(client.info("persistence").get("loading", 0)) == 0
    except redis.RedisError:
        return False


def _until(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)
