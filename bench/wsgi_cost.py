"""What one answer costs inside the API process: flashstock's WSGI app against the ceiling's, no HTTP server.

    .venv/bin/python -m bench.wsgi_cost [--requests 20000] [--rounds 5]     # CPU time, alternating rounds
    .venv/bin/python -m bench.wsgi_cost --instructions [--out F.json]      # instructions (valgrind)
    .venv/bin/python -m bench.wsgi_cost --profile flashstock [--sort tottime]

Both apps are called directly with the same POST /v1/reservations environ, under gevent's monkey
patching as in a gunicorn gevent worker, against a private redis-server. Left out: gunicorn, gevent's
I/O loop and the network stack, which cost both the same, and the server's own CPU. What remains is the
Python cost of one answer that the application decides: the part of issue 13's "server CPU per 201"
that flashstock can change.

- Default: CPU time (`process_time`) per answer, 201s (stock for every request) and 409s (none;
  flashstock's come from its sold-out cache), targets alternating in rounds. Noisy on a shared box:
  ±15% between rounds.
- `--instructions`: instructions per 201 counted by `valgrind --tool=callgrind`, as the difference
  between a child that answers 200 requests and one that answers 2,200 (start-up cancels out). Exact to
  about ±1% between runs and unaffected by other tenants; slow (about 3 minutes per target).
- `--profile NAME`: cProfile of that app's 201 path.

The request log line goes to /dev/null: its cost is part of the product.
"""

from __future__ import annotations

if __name__ == "__main__":  # before anything imports socket or threading, as gunicorn's gevent worker does
    from gevent import monkey

    monkey.patch_all()

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from bench.procs import ProcessGroup
from bench.services import start_redis
from bench.targets import BENCH_API_KEY, FS_KEY_PREFIX, Env, fs_seed

SKU = "WSGI-COST"
TARGETS = ("flashstock", "ceiling")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
INSTRUCTION_COUNTS = (200, 2200)  # requests of the two children whose difference is measured


def _environ(n: int, tag: str) -> dict[str, Any]:
    body = json.dumps({"user_id": f"{tag}-{n}", "items": [{"sku": SKU, "qty": 1}]}).encode()
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/v1/reservations", "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
        "HTTP_X_API_KEY": BENCH_API_KEY, "HTTP_X_REQUEST_ID": str(n), "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0), "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }


def _call(app: WSGIApp, environ: dict[str, Any], expect: str) -> None:
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h, exc=None: status.append(s)))
    if status[0][:3] != expect:
        raise RuntimeError(f"expected {expect}, got {status[0]}: {body[:300]!r}")


def _apps(port: int) -> tuple[dict[str, WSGIApp], Callable[[int], None]]:
    """Both apps on the private server, and the bench's own seeding of the SKU (bench/targets.py)."""
    from api import create_app
    from bench.ceiling.app import create_app as create_ceiling
    from inventory.config import Settings
    from inventory.migrations import upgrade

    database_url = f"sqlite:///{tempfile.mkdtemp(prefix='wsgi-cost-db-')}/flashstock.db"
    upgrade(database_url)  # the API checks Redis against it when it finds the script cache empty
    settings = Settings.from_env(
        database_url=database_url, redis_url=f"redis://127.0.0.1:{port}/0", key_prefix=FS_KEY_PREFIX,
        storefront_api_keys=(BENCH_API_KEY,), rate_limit_reservations="1000000/second",
        rate_limit_reservations_per_ip="100000000/second", log_level="INFO")
    apps = {"flashstock": create_app(settings), "ceiling": create_ceiling(redis_port=port, key_prefix=FS_KEY_PREFIX)}

    def seed(units: int) -> None:
        fs_seed(Env(redis_port=port, pg_dsn=None), SKU, units)
        time.sleep(0.3)  # the API's sold-out cache hears of the new stock (its bound: 100 ms)

    return apps, seed


def _round(app: WSGIApp, n: int, tag: str, expect: str) -> float:
    """Process CPU µs per answer over n calls."""
    environs = [_environ(i, tag) for i in range(n)]
    started = time.process_time()
    for environ in environs:
        _call(app, environ, expect)
    return (time.process_time() - started) / n * 1e6


def _cpu_rounds(apps: dict[str, WSGIApp], seed: Callable[[int], None], requests: int, rounds: int) -> dict:
    results: dict[str, list[float]] = {}
    for r in range(rounds):
        for name in (TARGETS if r % 2 == 0 else TARGETS[::-1]):
            for status, units in (("201", requests + 300), ("409", 0)):
                seed(units)
                _round(apps[name], 200, f"w{r}{name}{status}", status)  # warm-up (and the cache's first refusal)
                results.setdefault(f"{name} {status}", []).append(
                    _round(apps[name], requests, f"r{r}{name}{status}", status))
    ratios = {status: [f / c for f, c in zip(results[f"flashstock {status}"], results[f"ceiling {status}"])]
              for status in ("201", "409")}
    return {"cpu_us_per_answer": results, "flashstock_over_ceiling": ratios}


def _child(target: str, requests: int, port: int) -> None:
    """Answer `requests` 201s with one app (run under valgrind by `_instructions`)."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        apps, seed = _apps(port)
        seed(requests + 10)
        for i in range(requests):
            _call(apps[target], _environ(i, "v"), "201")


def _instructions(port: int) -> dict:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (apt-get install -y valgrind)")
    per_request: dict[str, float] = {}
    for target in TARGETS:
        counts = []
        for n in INSTRUCTION_COUNTS:
            run = subprocess.run(
                [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
                 "bench.wsgi_cost", "--child", target, str(n), str(port)],
                capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, check=True)
            counts.append(int(re.search(r"Collected : (\d+)", run.stderr).group(1)))  # type: ignore[union-attr]
        per_request[target] = (counts[1] - counts[0]) / (INSTRUCTION_COUNTS[1] - INSTRUCTION_COUNTS[0])
    return {"instructions_per_201": per_request,
            "flashstock_over_ceiling": per_request["flashstock"] / per_request["ceiling"]}


def _revision() -> str:
    """The commit of the code measured (the working directory's, which may be another worktree)."""
    run = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return run.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--instructions", action="store_true", help="count instructions per 201 with valgrind")
    p.add_argument("--profile", choices=TARGETS, default="")
    p.add_argument("--sort", default="cumulative", help="cProfile sort key for --profile")
    p.add_argument("--top", type=int, default=45, help="functions --profile prints")
    p.add_argument("--child", nargs=3, metavar=("TARGET", "REQUESTS", "PORT"), help=argparse.SUPPRESS)
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    if a.child:
        _child(a.child[0], int(a.child[1]), int(a.child[2]))
        return 0
    group = ProcessGroup(Path(tempfile.mkdtemp(prefix="wsgi-cost-")))
    try:
        port = start_redis(group).port
        if a.instructions:
            report = _instructions(port)
        else:
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                apps, seed = _apps(port)
                if a.profile:
                    seed(a.requests + 10)
                    profile = cProfile.Profile()
                    profile.runcall(_round, apps[a.profile], a.requests, "p", "201")
            if a.profile:
                pstats.Stats(profile).sort_stats(a.sort).print_stats(a.top)
                return 0
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                report = _cpu_rounds(apps, seed, a.requests, a.rounds)
        report["run"] = {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "load": os.getloadavg()[0], "revision": _revision(),
                         **({"requests_counted": INSTRUCTION_COUNTS} if a.instructions
                            else {"requests": a.requests, "rounds": a.rounds})}
        print(json.dumps(report, indent=1))
        if a.out:
            Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
        return 0
    finally:
        group.stop_all()


if __name__ == "__main__":
    sys.exit(main())
