"""Which load generator leaves the most CPU to the server? Same ceiling target, same duration, each generator.

    .venv/bin/python -m bench.compare_generators --locust-bin /tmp/locustenv/bin/locust
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.cpu import CpuWindow
from bench.generators import GENERATORS, Load
from bench.procs import ProcessGroup, free_port, install_signal_handlers, wait_for_port
from bench.run import BENCH, REPO
from bench.services import start_redis
from bench.targets import Env, ceiling_target

SKU = "gen-eval"


def main(argv: list[str] | None = None) -> int:
    """Run every generator against the ceiling at each connection count; write a JSON table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--generators", default="wrk,asyncio,locust")
    p.add_argument("--connections", default="64,256")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions")
    p.add_argument("--locust-bin", default="locust")
    p.add_argument("--redis-client", default="tuned")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "generators.json")
    a = p.parse_args(argv)
    install_signal_handlers()
    tmp = BENCH / "results" / "tmp" / "generators"
    rows = []
    with ProcessGroup(tmp) as procs:
        rs = start_redis(procs)
        env = Env(redis_port=rs.port, pg_dsn=None, redis_client=a.redis_client)
        target = ceiling_target()
        port = free_port()
        server = procs.start("ceiling", target.command(env, port), cwd=REPO)
        wait_for_port(port, 30, server)
        target.seed(env, SKU, 10**12)  # never sells out: every answer is a real reserve
        for rnd in range(a.rounds):
            for conns in [int(c) for c in a.connections.split(",")]:
                for gen in a.generators.split(","):
                    tag = f"{gen}-c{conns}-r{rnd}"
                    load = Load(port, SKU, conns, 10**9, a.seconds, tag)
                    extra = {"locust_bin": a.locust_bin} if gen == "locust" else {}
                    win = CpuWindow({"server": server.pid, "redis": rs.pid}, include_postgres=False)
                    win.start()
                    t0 = time.monotonic()
                    res = GENERATORS[gen](procs, load, tmp / f"{tag}.json", **extra)
                    cpu = win.stop(time.monotonic() - t0, res["generator_cpu_s"])
                    answered = sum(v for k, v in res["status"].items() if k != "transport_errors")
                    row = {
                        "generator": gen,
                        "connections": conns,
                        "round": rnd,
                        "rps": res["rps"],
                        "p99_ms": res["latency_ms"]["p99"],
                        "answered": answered,
                        "generator_cpu_s": res["generator_cpu_s"],
                        "generator_us_per_req": round(res["generator_cpu_s"] / max(answered, 1) * 1e6, 1),
                        "generator_share_of_capacity": cpu["generator_share_of_capacity"],
                        "generator_share_of_busy": cpu["generator_share_of_busy"],
                        "server_cpu_s": cpu["component_cpu_s"]["server"],
                        "redis_cpu_s": cpu["component_cpu_s"]["redis"],
                        "wall_s": cpu["wall_s"],
                        "errors": res["status"]["transport_errors"] + res["status"]["5xx"],
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"seconds": a.seconds, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
