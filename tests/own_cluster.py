"""A private Redis Cluster on free loopback ports, for tests that run on, fail over or reshard a cluster.

Every node is a `redis-server --cluster-enabled yes` in its own process group with its own data dir
under the given tmp dir; `redis-cli --cluster create` joins them. Nothing is persisted and nothing
outside the tmp dir is touched. Never the shared server on 6379.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import redis
from redis.cluster import ClusterNode, RedisCluster

HOST = "127.0.0.1"
SLOTS = 16384
BUS_PORT_OFFSET = 10000  # Redis Cluster's bus listens on port + 10000: both must be free


class ClusterStartError(RuntimeError):
    """The cluster did not form (or re-form) in time; the message carries every node's log tail."""


@dataclass(frozen=True)
class NodeInfo:
    """One line of CLUSTER NODES, as seen by one node."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def is_failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr", "handshake"})


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int, taken: set[int] | None = None) -> list[int]:
    """`count` loopback ports whose cluster bus port (port + 10000) is free too."""
    taken = set(taken or ())
    ports: list[int] = []
    for _ in range(2000):
        port = random.randint(20000, 29999)  # below the ephemeral range, so the bus port stays valid
        if port in taken or port + BUS_PORT_OFFSET in taken:
            continue
        if _port_free(port) and _port_free(port + BUS_PORT_OFFSET):
            ports.append(port)
            taken.update({port, port + BUS_PORT_OFFSET})
            if len(ports) == count:
                return ports
    raise OSError(f"found only {len(ports)} of {count} free port pairs on {HOST}")


def parse_cluster_nodes(text: str) -> list[NodeInfo]:
    """CLUSTER NODES text to NodeInfo rows; importing/migrating markers ([..->-..]) are ignored."""
    rows: list[NodeInfo] = []
    for line in text.strip().splitlines():
        fields = line.split()
        address = fields[1].split("@")[0]
        port = int(address.rsplit(":", 1)[1]) if ":" in address and address.rsplit(":", 1)[1] else 0
        flags = frozenset(fields[2].replace("myself", "").split(",")) - {""}
        slots: list[tuple[int, int]] = []
        for item in fields[8:]:
            if item.startswith("["):
                continue
            low, _, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        master_id = None if fields[3] == "-" else fields[3]
        rows.append(NodeInfo(fields[0], port, flags, master_id, tuple(sorted(slots))))
    return rows


class OwnCluster:
    """A local Redis Cluster: `masters` masters with `replicas_per_master` replicas each."""

    def __init__(
        self,
        tmp_dir: Path,
        masters: int = 3,
        replicas_per_master: int = 0,
        node_timeout_ms: int = 1000,
        start_timeout: float = 30.0,
    ) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.dir = Path(tmp_dir)
        self.master_count = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        self.start_timeout = start_timeout
        self.ports: list[int] = free_cluster_ports(masters * (1 + replicas_per_master))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._nodes: dict[int, redis.Redis] = {}
        self._initial_masters: list[int] = self.ports[:masters]

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "OwnCluster":
        """Start every node, create the cluster and wait until all nodes agree; stop again on failure."""
        server = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if server is None or cli is None:
            raise FileNotFoundError("redis-server / redis-cli are not installed (scripts/test installs them)")
        try:
            for port in self.ports:
                self._start_node(server, port)
            self._wait(lambda: all(self._answers(p) for p in self.ports), 10, "nodes did not answer PING")
            create = subprocess.run(
                [cli, "--cluster", "create", *[f"{HOST}:{p}" for p in self.ports],
                 "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"],
                capture_output=True, text=True, timeout=self.start_timeout, stdin=subprocess.DEVNULL)
            if create.returncode != 0:
                raise ClusterStartError(
                    f"redis-cli --cluster create failed ({create.returncode}):\n{create.stdout}\n{create.stderr}"
                    + self._log_tails())
            self.wait_consistent(self.start_timeout)
            if self.replicas_per_master:
                self._wait(self._replicas_in_sync, self.start_timeout, "replicas did not finish their sync")
            self._initial_masters = self.masters()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, server: str, port: int) -> None:
        node_dir = self.dir / f"node-{port}"
        node_dir.mkdir(parents=True, exist_ok=True)
        log = open(node_dir / "redis.log", "ab")
        try:
            self.procs[port] = subprocess.Popen(
                [server,
                 "--port", str(port), "--bind", HOST, "--dir", str(node_dir), "--daemonize", "no",
                 "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                 "--cluster-node-timeout", str(self.node_timeout_ms),
                 # a replica promotes however stale its data: tests kill masters right after writes
                 "--cluster-replica-validity-factor", "0",
                 "--repl-diskless-sync-delay", "0",  # replicas sync at once, not after 5 s
                 "--appendonly", "no", "--save", ""],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()

    def stop(self) -> None:
        """Terminate every process group this cluster started (SIGKILL if SIGTERM is not enough)."""
        for client in self._nodes.values():
            client.close()
        self._nodes.clear()
        for proc in self.procs.values():
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(5)

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)  # start_new_session: the group id is the server's pid
        except ProcessLookupError:
            pass

    def __enter__(self) -> "OwnCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- views

    @property
    def url(self) -> str:
        """redis+cluster://host:port,... listing the current masters."""
        ports = self.masters() if self.alive() else self._initial_masters
        return "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in ports)

    def alive(self) -> list[int]:
        """Ports whose redis-server process is still running."""
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def node(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client on one node, decoding replies; for admin commands and checks."""
        if port not in self._nodes:
            self._nodes[port] = redis.Redis(
                host=HOST, port=port, decode_responses=True, socket_timeout=5, socket_connect_timeout=2)
        return self._nodes[port]

    def nodes(self, seen_from: int | None = None) -> list[NodeInfo]:
        """CLUSTER NODES as seen by one live node (the first live one by default)."""
        ports = [seen_from] if seen_from is not None else self.alive()
        last: Exception | None = None
        for port in ports:
            try:
                return parse_cluster_nodes(self.node(port).execute_command("CLUSTER", "NODES"))
            except redis.RedisError as error:
                last = error
        raise ClusterStartError(f"no live node answered CLUSTER NODES ({last})")

    def masters(self) -> list[int]:
        """Ports of live masters, in port order."""
        live = set(self.alive())
        return sorted(n.port for n in self.nodes() if n.is_master and not n.is_failed and n.port in live)

    def replicas(self) -> list[int]:
        """Ports of live replicas, in port order."""
        live = set(self.alive())
        return sorted(n.port for n in self.nodes() if not n.is_master and not n.is_failed and n.port in live)

    def replicas_of(self, master_port: int) -> list[int]:
        """Ports of the live replicas of one master."""
        rows = self.nodes()
        master_id = next(n.node_id for n in rows if n.port == master_port)
        live = set(self.alive())
        return sorted(n.port for n in rows if n.master_id == master_id and n.port in live and not n.is_failed)

    def node_id(self, port: int) -> str:
        """The cluster node id of the node on `port`."""
        return str(self.node(port).execute_command("CLUSTER", "MYID"))

    def slot_owner(self, slot: int) -> int:
        """Port of the master serving `slot` (by the live nodes' agreed map)."""
        for n in self.nodes():
            if n.is_master and not n.is_failed and any(lo <= slot <= hi for lo, hi in n.slots):
                return n.port
        raise LookupError(f"slot {slot} has no live owner")

    def client(self, **kwargs: object) -> RedisCluster:
        """A redis-py RedisCluster on this cluster (RESP2), started from every initial master."""
        options: dict[str, object] = {"protocol": 2, "socket_timeout": 5, "socket_connect_timeout": 2}
        options.update(kwargs)
        return RedisCluster(
            startup_nodes=[ClusterNode(HOST, p) for p in self.masters()], **options)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- waiting

    def wait_consistent(self, timeout: float = 20.0) -> None:
        """Wait until every live node reports cluster_state:ok and the same complete slot map."""
        self._wait(self._consistent, timeout, "the cluster did not become ok and agree on its slot map")

    def _consistent(self) -> bool:
        maps = []
        for port in self.alive():
            try:
                info = self.node(port).execute_command("CLUSTER", "INFO")
                rows = parse_cluster_nodes(self.node(port).execute_command("CLUSTER", "NODES"))
            except redis.RedisError:
                return False
            if "cluster_state:ok" not in info:
                return False
            if any(n.flags & {"handshake", "noaddr"} for n in rows):
                return False
            owned = frozenset((n.node_id, n.slots) for n in rows if n.is_master and not n.is_failed and n.slots)
            if sum(hi - lo + 1 for _, ranges in owned for lo, hi in ranges) != SLOTS:
                return False
            maps.append(owned)
        return bool(maps) and all(m == maps[0] for m in maps)

    def _replicas_in_sync(self) -> bool:
        for port in self.replicas():
            info = self.node(port).info("replication")
            if info.get("master_link_status") != "up" or info.get("master_sync_in_progress"):
                return False
        return len(self.replicas()) == self.master_count * self.replicas_per_master

    def _answers(self, port: int) -> bool:
        proc = self.procs[port]
        if proc.poll() is not None:
            raise ClusterStartError(f"redis-server on {port} exited ({proc.returncode})" + self._log_tails())
        try:
            return bool(self.node(port).ping())
        except redis.RedisError:
            return False

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise ClusterStartError(f"{what} within {timeout}s" + self._state() + self._log_tails())
            time.sleep(0.05)

    def _state(self) -> str:
        parts = []
        for port in self.alive():
            try:
                parts.append(f"\n--- CLUSTER NODES seen from {port}:\n"
                             + self.node(port).execute_command("CLUSTER", "NODES"))
            except redis.RedisError as error:
                parts.append(f"\n--- {port}: {error}")
        return "".join(parts)

    def _log_tails(self, lines: int = 15) -> str:
        parts = []
        for port in self.ports:
            path = self.dir / f"node-{port}" / "redis.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
            parts.append(f"\n--- node {port} log tail:\n" + "\n".join(text))
        return "".join(parts)

    # ---------------------------------------------------------------- faults

    def kill_master(self, port: int) -> list[int]:
        """SIGKILL a master (no shutdown, no save); returns the ports of its replicas, which may take over."""
        replicas = self.replicas_of(port)
        proc = self.procs[port]
        self._signal(proc, signal.SIGKILL)
        proc.wait(5)
        self._nodes.pop(port, None)
        return replicas

    def failover(self, replica_port: int, timeout: float = 20.0) -> int:
        """Make a replica master and wait until the cluster is ok; returns its port.

        With its master alive: CLUSTER FAILOVER (the coordinated manual failover). With its master
        killed: nothing is sent, the cluster's own automatic failover is awaited.
        """
        rows = self.nodes(seen_from=replica_port)
        me = next(n for n in rows if n.port == replica_port)
        if me.is_master:
            raise ValueError(f"{replica_port} is already a master")
        master = next(n for n in rows if n.node_id == me.master_id)
        if master.port in self.alive() and not master.is_failed:
            self.node(replica_port).execute_command("CLUSTER", "FAILOVER")

        def promoted() -> bool:
            try:
                return self.node(replica_port).execute_command("ROLE")[0] == "master"
            except redis.RedisError:
                return False

        started = time.monotonic()
        self._wait(promoted, timeout, f"replica {replica_port} was not promoted")
        self.wait_consistent(max(1.0, timeout - (time.monotonic() - started)))
        return replica_port

    def migrate_slot(
        self,
        slot: int,
        to_port: int,
        batch_size: int = 100,
        between_batches: Callable[[int], None] | None = None,
        timeout_ms: int = 5000,
    ) -> int:
        """Live-reshard one slot to the master on `to_port`; returns the number of keys moved.

        The documented procedure (CLUSTER SETSLOT): IMPORTING on the target, MIGRATING on the source,
        MIGRATE ... KEYS in batches of `batch_size`, then SETSLOT NODE on the target, the source and
        every other master. `between_batches(moved_so_far)` runs once the slot is half-migrated and
        after every batch, before ownership moves: traffic run there meets ASK redirections.
        """
        source = self.slot_owner(slot)
        if source == to_port:
            return 0
        source_id, target_id = self.node_id(source), self.node_id(to_port)
        src, dst = self.node(source), self.node(to_port)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)  # target first: ready for ASK
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        while True:
            if between_batches is not None:
                between_batches(moved)
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch_size)
            if not keys:
                break
            src.execute_command("MIGRATE", HOST, to_port, "", 0, timeout_ms, "KEYS", *keys)
            moved += len(keys)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for port in self.masters():
            if port not in (source, to_port):
                self.node(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_consistent()
        return moved
