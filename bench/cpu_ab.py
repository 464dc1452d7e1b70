"""Server CPU per answer, user and system apart, for several targets in alternating rounds of one run.

    .venv/bin/python -m bench.cpu_ab [--targets flashstock,ceiling] [--units 10000000] [--rounds 4]
    .venv/bin/python -m bench.cpu_ab --targets flashstock,flashstock@/tmp/base --units 0   # A/B two checkouts

One private redis-server and bench database; every target's server runs for the whole run, and each
round reseeds the hot SKU with `--units` (0: every answer is a sold-out, 10M: every answer a 201) and
sends wrk's reserve load to each target in turn. `NAME@DIR` runs target NAME from another checkout of
the project (a `git worktree` of an earlier commit), so a change is measured against its parent in the
same run. Printed per round and as medians: req/s, user and system CPU µs per answer of the server's
process tree (system time is where one write or send system call more or less per answer shows).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.cpu import delta, tree_cpu_times
from bench.generators import Load, run_wrk
from bench.procs import ProcessGroup, free_port, install_signal_handlers, wait_for_port
from bench.services import create_bench_db, drop_bench_db, start_redis
from bench.targets import Env, all_targets

ROOT = Path(__file__).resolve().parents[1]


def cpu_between(before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """(user, system) CPU seconds a process tree used between two `tree_cpu_times` snapshots."""
    return (delta({p: u for p, (u, _) in before.items()}, {p: u for p, (u, _) in after.items()}),
            delta({p: s for p, (_, s) in before.items()}, {p: s for p, (_, s) in after.items()}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--targets", default="flashstock,ceiling", help="NAME or NAME@CHECKOUT_DIR, comma-separated")
    p.add_argument("--units", type=int, default=10_000_000)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--pg-dsn", default="host=127.0.0.1 port=5432 user=postgres")
    p.add_argument("--pg-admin-db", default="test")
    a = p.parse_args(argv)
    install_signal_handlers()
    logs = Path(tempfile.mkdtemp(prefix="cpu-ab-"))
    per_answer: dict[str, list[tuple[float, float, float]]] = {}
    with ProcessGroup(logs) as procs:
        try:
            env = Env(redis_port=start_redis(procs).port, pg_dsn=create_bench_db(a.pg_dsn, a.pg_admin_db))
            servers = {}
            for spec in a.targets.split(","):
                name, _, checkout = spec.partition("@")
                target, port = all_targets()[name], free_port()
                server = procs.start(spec.replace("/", "_"), target.command(env, port), cwd=checkout or ROOT,
                                     env=target.env_vars(env) if target.env_vars else None)
                wait_for_port(port, 30, server)
                servers[spec] = (target, port, server)
            time.sleep(2)  # the workers finish importing
            for r in range(a.rounds):
                for spec, (target, port, server) in servers.items():
                    target.seed(env, "hot-1", a.units)
                    time.sleep(0.5)  # the sold-out caches hear of the new stock
                    before = tree_cpu_times(server.pid)
                    load = Load(port, "hot-1", a.connections, 10**9, float(a.seconds), "cpu-ab")
                    result = run_wrk(procs, load, logs / f"{spec.replace('/', '_')}-{r}.json")
                    user, system = cpu_between(before, tree_cpu_times(server.pid))
                    answers = result["status"]["201"] + result["status"]["409"]
                    row = (user / answers * 1e6, system / answers * 1e6, result["rps"])
                    per_answer.setdefault(spec, []).append(row)
                    print(f"round {r} {spec:32s} {row[2]:8.0f} req/s  user {row[0]:6.1f} µs  system {row[1]:5.1f} µs"
                          f"  total {row[0] + row[1]:6.1f} µs  {result['status']}", flush=True)
            for (_, _, server) in servers.values():
                procs.stop(server)
        finally:
            drop_bench_db(a.pg_dsn, a.pg_admin_db)
    for spec, rows in per_answer.items():
        user, system = statistics.median(u for u, _, _ in rows), statistics.median(s for _, s, _ in rows)
        print(f"{spec:32s} median: total {statistics.median(u + s for u, s, _ in rows):6.1f} µs, user "
              f"{user:6.1f}, system {system:5.1f}, {statistics.median(r for _, _, r in rows):8.0f} req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
