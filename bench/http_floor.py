"""The HTTP stack's own cost: server CPU per request of a constant WSGI app on each gunicorn worker class.

    .venv/bin/python -m bench.http_floor [--rounds 3] [--seconds 10] [--connections 64]

For each round and each worker class (gunicorn's plain gevent worker, its gevent_pywsgi worker, and the
API's api.worker.PyWSGIWorker), starts gunicorn (2 workers, keep-alive 5 s) on a free port serving a
2-byte answer, warms it with wrk for 3 s, then sends wrk's POST (a reserve body with the headers the
storefront sends) for --seconds and reads the gunicorn process tree's CPU from /proc. Classes alternate
within each round; the ratio to the plain gevent worker is taken within the round. Writes
bench/results/http_floor.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.cpu import tree_cpu_s
from bench.procs import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
WORKERS = {"plain_gevent": "gevent", "gevent_pywsgi": "gevent_pywsgi", "api_worker": "api.worker.PyWSGIWorker"}
POST_LUA = """wrk.method = "POST"
wrk.body = '{"user_id":"u-123456","items":[{"sku":"HOT","qty":1}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "bench-storefront-key"
wrk.headers["X-Request-ID"] = "12345"
"""


def measure(worker_class: str, seconds: int, connections: int, script: Path) -> dict[str, float]:
    """req/s and server CPU µs per request of the constant app on one worker class."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "bench" / "gunicorn_conf.py"), "-w", "2", "-k", worker_class,
         "--keep-alive", "5", "--worker-connections", "1000", "--log-level", "warning", "--no-control-socket",
         "-b", f"127.0.0.1:{port}", "tests.api.constant_app:app"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 20, server)
        url = f"http://127.0.0.1:{port}/"
        wrk = ["wrk", "-t2", f"-c{connections}", "-s", str(script)]
        subprocess.run([*wrk, "-d3s", url], check=True, capture_output=True)
        before = sum(tree_cpu_s(server.pid).values())
        out = subprocess.run([*wrk, f"-d{seconds}s", url], check=True, capture_output=True, text=True).stdout
        cpu = sum(tree_cpu_s(server.pid).values()) - before
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        return {"rps": rps, "server_cpu_us_per_request": round(cpu / requests * 1e6, 1)}
    finally:
        server.terminate()
        server.wait(timeout=20)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "http_floor.json"))
    a = p.parse_args(argv)
    script = Path(a.out).with_suffix(".post.lua")
    script.write_text(POST_LUA)
    rounds = []
    try:
        for n in range(a.rounds):
            row = {name: measure(cls, a.seconds, a.connections, script) for name, cls in WORKERS.items()}
            base = row["plain_gevent"]["server_cpu_us_per_request"]
            for figures in row.values():
                figures["cpu_vs_plain_gevent"] = round(figures["server_cpu_us_per_request"] / base, 3)
            rounds.append(row)
            print(f"round {n + 1}: " + "  ".join(f"{name} {f['rps']:.0f} req/s {f['server_cpu_us_per_request']} µs "
                                                 f"({f['cpu_vs_plain_gevent']}x)" for name, f in row.items()), flush=True)
            time.sleep(1)
    finally:
        script.unlink(missing_ok=True)
    Path(a.out).write_text(json.dumps({
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "connections": a.connections,
        "seconds": a.seconds, "app": "tests/api/constant_app.py (2-byte 200)", "request": POST_LUA,
        "workers": WORKERS, "rounds": rounds}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
