"""A private 3-master Redis Cluster for cluster rows, and per-shard operation counts.

The cluster is tests/own_cluster.OwnCluster (free loopback ports, own data dirs under the run's tmp
dir, every node in its own process group, stopped by pid). A shard snapshot is each node's
`INFO commandstats` (calls and server µs of the script commands) and `INFO stats`
(total_commands_processed), so a phase's per-shard load is the difference of two snapshots. The
single node is read the same way, so the single row and the cluster rows compare like with like.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional

import redis

from tests.own_cluster import OwnCluster

SCRIPT_COMMANDS = ("evalsha", "evalsha_ro", "eval", "eval_ro", "fcall")
COUNTERS = ("commands", "scripts", "script_usec")


@dataclass(frozen=True)
class Backend:
    """The Redis a phase talks to: the single node, or the cluster's masters (port -> pid) and URL."""

    name: str  # "single" or "cluster"
    nodes: dict[int, int]
    cluster_url: Optional[str] = None

    @property
    def port(self) -> int:
        """The single node's port (the first master's on a cluster)."""
        return next(iter(self.nodes))

    def cpu_pids(self) -> dict[str, int]:
        """CpuWindow names: 'redis' for a single node, 'redis:<port>' per cluster node."""
        if self.cluster_url is None:
            return {"redis": next(iter(self.nodes.values()))}
        return {f"redis:{port}": pid for port, pid in self.nodes.items()}


def merge_redis_cpu(cpu: dict) -> dict:
    """Sum the per-node 'redis:<port>' CPU of a cluster into 'redis' (kept per node under redis_nodes_cpu_s)."""
    parts = cpu["component_cpu_s"]
    nodes = {k: v for k, v in parts.items() if k.startswith("redis:")}
    if nodes:
        cpu["redis_nodes_cpu_s"] = nodes
        cpu["component_cpu_s"] = {k: v for k, v in parts.items() if k not in nodes} | {
            "redis": round(sum(nodes.values()), 3)}
    return cpu


def start_cluster(tmp: Path, masters: int = 3) -> OwnCluster:
    """Start a `masters`-master cluster (no replicas) under tmp/cluster; the caller stops it."""
    return OwnCluster(tmp / "cluster", masters=masters).start()


def node_pids(cluster: OwnCluster) -> dict[int, int]:
    """Port -> pid of every redis-server of the cluster (for CPU accounting)."""
    return {port: proc.pid for port, proc in cluster.procs.items() if proc.poll() is None}


# -- pure logic (tested in tests/bench) -------------------------------------------------------------


def node_counters(commandstats: Mapping[str, Mapping[str, float]], stats: Mapping[str, object]) -> dict[str, int]:
    """One node's counters from parsed `INFO commandstats` and `INFO stats`: all commands, script
    calls (EVALSHA and its relatives) and the server µs those scripts took."""
    scripts = [commandstats.get(f"cmdstat_{name}", {}) for name in SCRIPT_COMMANDS]
    return {
        "commands": int(stats.get("total_commands_processed", 0)),  # type: ignore[call-overload]
        "scripts": int(sum(s.get("calls", 0) for s in scripts)),
        "script_usec": int(sum(s.get("usec", 0) for s in scripts)),
    }


def shard_delta(before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]],
                answers: int) -> dict:
    """Per-shard growth between two snapshots, each shard's share of the scripts, and per answer.

    `answers` is what the phase answered (HTTP answers or core calls), so `scripts_per_answer` says
    how many script calls one answer cost across all shards, and `max_shard_share` how much of them
    the busiest shard ran (1/shards is an even spread; 1.0 is one hot shard); `max_shard_usec_share`
    the same by the server time the scripts took (a reserve costs more than a rate-limit count).
    """
    shards = {node: {c: after[node][c] - before.get(node, {}).get(c, 0) for c in COUNTERS} for node in after}
    totals = {c: sum(s[c] for s in shards.values()) for c in COUNTERS}
    for s in shards.values():
        s["script_share"] = round(s["scripts"] / totals["scripts"], 4) if totals["scripts"] else 0.0
        s["usec_share"] = round(s["script_usec"] / totals["script_usec"], 4) if totals["script_usec"] else 0.0
        s["usec_per_script"] = round(s["script_usec"] / s["scripts"], 2) if s["scripts"] else None
    per = max(answers, 1)
    return {
        "shards": shards,
        "total": totals,
        "scripts_per_answer": round(totals["scripts"] / per, 3),
        "commands_per_answer": round(totals["commands"] / per, 3),
        "script_usec_per_answer": round(totals["script_usec"] / per, 2),
        "max_shard_share": max((s["script_share"] for s in shards.values()), default=0.0),
        "max_shard_usec_share": max((s["usec_share"] for s in shards.values()), default=0.0),
    }


# -- Redis reads ----------------------------------------------------------------------------------


def snapshot(ports: Iterable[int], host: str = "127.0.0.1") -> dict[str, dict[str, int]]:
    """Counters of each node (a single node or every master of a cluster), keyed 'host:port'."""
    out = {}
    for port in ports:
        with redis.Redis(host=host, port=port, decode_responses=True, socket_timeout=5) as node:
            out[f"{host}:{port}"] = node_counters(node.info("commandstats"), node.info("stats"))
    return out


def wipe_prefix(ports: Iterable[int], prefix: str, host: str = "127.0.0.1") -> None:
    """Unlink every key under prefix on each node, one key per UNLINK (keys of a node may sit in many slots)."""
    for port in ports:
        with redis.Redis(host=host, port=port, socket_timeout=10) as node:
            pipe = node.pipeline(transaction=False)
            for i, key in enumerate(node.scan_iter(match=f"{prefix}:*", count=1000), 1):
                pipe.unlink(key)
                if i % 1000 == 0:
                    pipe.execute()
            pipe.execute()
