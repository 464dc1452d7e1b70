"""Where a flashstock reserve request's CPU goes: py-spy (non-blocking) on one worker under wrk load.

    .venv/bin/python -m bench.profile_flashstock [--seconds 20] [--connections 64] [--units 0] [--target ceiling]

Starts the same stack as the `flashstock` target (private redis-server, bench databases), sends
reserve attempts with wrk, samples one worker with `py-spy record --nonblocking --format raw`, and
prints the share of samples whose stack passes through each part of the request path. --units 0
profiles the sold-out (409) path, which is ~95% of the hot-SKU answers. --target names another bench
target (e.g. `ceiling`) to profile the same load on it, for a side-by-side view; --top N also prints
the N functions with the most samples (inclusive), to see what the parts above do not name.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil

from bench.generators import Load, run_wrk
from bench.procs import ProcessGroup, free_port, install_signal_handlers, wait_for_port
from bench.services import create_bench_db, drop_bench_db, start_redis
from bench.targets import Env, all_targets

BENCH = Path(__file__).resolve().parent
# (label, substring of a collapsed-stack frame); a sample counts once per label
PARTS = [
    ("rate limits (api/ratelimit.py, incl. its Redis pipeline)", "ratelimit.py"),
    ("marshmallow validation", "marshmallow"),
    ("auth (api/auth.py)", "auth.py"),
    ("idempotency (api/idempotency.py)", "idempotency.py"),
    ("logging (structlog / logging)", "structlog"),
    ("metrics (prometheus_client)", "prometheus_client"),
    ("reserve view (api/views/reservations.py)", "api/views/reservations.py"),
    ("reserve core call (inventory/reservations.py)", "inventory/reservations.py"),
    ("redis-py (all calls, incl. socket I/O)", "(redis/"),
    ("flask / werkzeug", "(flask/"),
    ("werkzeug", "(werkzeug/"),
    ("gunicorn gevent worker (I/O, parsing)", "gunicorn"),
    ("gevent pywsgi (I/O, parsing)", "pywsgi"),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--units", type=int, default=0)
    p.add_argument("--target", default="flashstock", help="a bench target name (bench/targets.py)")
    p.add_argument("--top", type=int, default=0, help="also print the N hottest functions (inclusive)")
    p.add_argument("--pg-dsn", default="host=127.0.0.1 port=5432 user=postgres")
    p.add_argument("--pg-admin-db", default="test")
    a = p.parse_args(argv)
    install_signal_handlers()
    tmp = BENCH / "results" / "tmp" / ("profile-" + datetime.now().strftime("%Y%m%d-%H%M%S"))
    tmp.mkdir(parents=True, exist_ok=True)
    target = all_targets()[a.target]
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with ProcessGroup(tmp) as procs:
        try:
            rs = start_redis(procs)
            dsn = create_bench_db(a.pg_dsn, a.pg_admin_db)
            env = Env(redis_port=rs.port, pg_dsn=dsn)
            port = free_port()
            server = procs.start(target.name, target.command(env, port), cwd=BENCH.parent, env=target.env_vars(env) if target.env_vars else None)
            wait_for_port(port, 30, server)
            target.seed(env, "hot-1", a.units)
            time.sleep(2)  # the workers finish importing before sampling starts
            worker = psutil.Process(server.pid).children()[0].pid
            raw = tmp / f"{target.name}.raw"
            rec = procs.start("py-spy", [spy, "record", "--nonblocking", "--format", "raw", "-r", "200",
                                         "-d", str(a.seconds), "-p", str(worker), "-o", str(raw)])
            time.sleep(1)
            load = Load(port, "hot-1", a.connections, 10**9, float(a.seconds), "profile")
            result = run_wrk(procs, load, tmp / "profile.json")
            rec.wait(60)
            procs.stop(server)
        finally:
            drop_bench_db(a.pg_dsn, a.pg_admin_db)
    total, hits, functions = 0, collections.Counter(), collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        total += int(n)
        for label, needle in PARTS:
            if needle in stack:
                hits[label] += int(n)
        for frame in {_function(frame) for frame in stack.split(";")}:
            functions[frame] += int(n)
    print(f"{result['rps']:.0f} req/s at {a.connections} conns, status {result['status']}, {total} samples")
    for label, _ in PARTS:
        print(f"  {hits[label] / max(total, 1):6.1%}  {label}")
    for frame, count in functions.most_common(a.top):
        print(f"  {count / max(total, 1):6.1%}  {frame}")
    print(f"raw stacks: {raw}")
    return 0


def _function(frame: str) -> str:
    """'name (path/to/file.py:12)' -> 'name (file.py)': one entry per function, not per line."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})" if where else name


if __name__ == "__main__":
    sys.exit(main())
