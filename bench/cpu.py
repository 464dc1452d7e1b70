"""CPU accounting from /proc: per process tree and for the whole machine."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds since boot summed over all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user/nice
    return (total - idle) / CLK_TCK, total / CLK_TCK


def tree_cpu_times(pid: int) -> dict[int, tuple[float, float]]:
    """(user, system) CPU seconds of pid and each live descendant, keyed by pid."""
    out: dict[int, tuple[float, float]] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = (t.user, t.system)
        except psutil.NoSuchProcess:
            continue
    return out


def tree_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user+system) of pid and each live descendant, keyed by pid."""
    return {child: user + system for child, (user, system) in tree_cpu_times(pid).items()}


def postgres_cpu_s() -> dict[int, float]:
    """CPU seconds of every postgres process (the server is shared, so this is approximate)."""
    out: dict[int, float] = {}
    for p in psutil.process_iter(["name"]):
        if p.info["name"] in ("postgres", "postmaster"):
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                continue
    return out


def delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two snapshots; processes born in between count from zero."""
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


@dataclass
class CpuWindow:
    """Snapshot of server-side CPU counters at the start of a load run."""

    server_pids: dict[str, int]
    include_postgres: bool
    _before: dict[str, dict[int, float]] | None = None
    _machine: tuple[float, float] | None = None

    def start(self) -> None:
        """Take the opening snapshot."""
        self._before = self._snap()
        self._machine = machine_busy_s()

    def stop(self, wall_s: float, generator_cpu_s: float) -> dict:
        """CPU seconds per component, machine busy share and the generator's share."""
        assert self._before is not None and self._machine is not None
        after = self._snap()
        busy1, total1 = machine_busy_s()
        busy = busy1 - self._machine[0]
        capacity = total1 - self._machine[1]
        parts = {k: round(delta(self._before[k], after[k]), 3) for k in after}
        return {
            "wall_s": round(wall_s, 3),
            "cores": os.cpu_count(),
            "machine_busy_s": round(busy, 3),
            "machine_capacity_s": round(capacity, 3),
            "component_cpu_s": parts | {"generator": round(generator_cpu_s, 3)},
            "generator_share_of_busy": round(generator_cpu_s / busy, 4) if busy else None,
            "generator_share_of_capacity": round(generator_cpu_s / capacity, 4) if capacity else None,
            # CPU of processes outside this run (other tenants of a shared box): high = noisy figures.
            "other_cpu_s": round(busy - generator_cpu_s - sum(parts.values()), 3),
            "other_share_of_capacity": round(max(0.0, busy - generator_cpu_s - sum(parts.values())) / capacity, 4)
            if capacity
            else None,
        }

    def _snap(self) -> dict[str, dict[int, float]]:
        snap = {name: tree_cpu_s(pid) for name, pid in self.server_pids.items()}
        if self.include_postgres:
            snap["postgres"] = postgres_cpu_s()
        return snap
