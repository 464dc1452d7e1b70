"""Load generator drivers (asyncio client, wrk, locust) behind one result shape."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from bench.procs import ProcessGroup
from bench.targets import BENCH_API_KEY

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


@dataclass(frozen=True)
class Load:
    """One closed-loop load: `requests` POSTs over `connections`, capped at `max_seconds`."""

    port: int
    sku: str
    connections: int
    requests: int
    max_seconds: float
    tag: str
    qty: int = 1


def _running(pid: int) -> bool:
    """True while pid has not exited; does not reap it (wait4 must still get its rusage)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None


def _wait_rusage(procs: ProcessGroup, proc: object, timeout_s: float) -> tuple[int, float]:
    """Reap proc, returning (exit status, CPU seconds of it and its threads)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)  # type: ignore[attr-defined]
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)  # type: ignore[attr-defined]
            procs.stop(proc)  # type: ignore[arg-type]
            return proc.returncode, ru.ru_utime + ru.ru_stime  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            procs.stop(proc)  # type: ignore[arg-type]
            raise TimeoutError(f"load generator {proc.pid} overran {timeout_s}s")  # type: ignore[attr-defined]
        time.sleep(0.05)


def run_asyncio(procs: ProcessGroup, load: Load, out: Path) -> dict:
    """Run bench/loadgen.py in its own process."""
    argv = [
        sys.executable, "-m", "bench.loadgen", "--port", str(load.port), "--sku", load.sku,
        "--qty", str(load.qty), "--connections", str(load.connections),
        "--requests", str(load.requests), "--max-seconds", str(load.max_seconds),
        "--tag", load.tag, "--out", str(out),
    ]
    proc = procs.start(f"loadgen-{load.tag}", argv, cwd=REPO)
    rc, cpu = _wait_rusage(procs, proc, load.max_seconds + 120)
    if rc != 0:
        raise RuntimeError(f"loadgen exited {rc}; see {procs.log_dir}/loadgen-{load.tag}.log")
    result = json.loads(out.read_text())
    result["generator_cpu_s"] = round(cpu, 3)  # whole-process rusage, incl. interpreter start
    return result


LATENCY_BUCKET = 1.01  # bench/wrk/reserve.lua: bucket b holds latencies in [1.01^b, 1.01^(b+1)) µs


def per_request_latency(paths: Iterable[Path]) -> dict[str, dict[str, float] | None]:
    """reserve.lua's per-thread histograms merged, per kind ('a' every answer, 's' steady): p50/p95/p99/
    p99.9/max in ms (each a bucket's upper bound, so within 1% above the truth) and the answer count;
    None for a kind with no answers (a target that does not echo request ids)."""
    counts: dict[str, dict[int, int]] = {"a": {}, "s": {}}
    for path in paths:
        for line in path.read_text().split("\n"):
            fields = line.split()
            if len(fields) == 3 and fields[0] in counts:
                kind = counts[fields[0]]
                kind[int(fields[1])] = kind.get(int(fields[1]), 0) + int(fields[2])
    return {kind: _percentiles(buckets) for kind, buckets in counts.items()}


def _percentiles(buckets: dict[int, int]) -> dict[str, float] | None:
    total = sum(buckets.values())
    if not total:
        return None
    ordered = sorted(buckets.items())
    result: dict[str, float] = {"answers": total}
    for name, share in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999), ("max", 1.0)):
        rank, seen = math.ceil(share * total), 0
        for bucket, count in ordered:
            seen += count
            if seen >= rank:
                result[name] = round(LATENCY_BUCKET ** (bucket + 1) / 1000, 3)
                break
    return result


def run_wrk(procs: ProcessGroup, load: Load, out: Path, threads: int = 2) -> dict:
    """Run wrk with bench/wrk/reserve.lua; quota per thread approximates load.requests."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not installed (apt-get install -y wrk)")
    threads = min(threads, load.connections)
    quota = math.ceil(load.requests / threads)
    argv = [
        wrk, "-t", str(threads), "-c", str(load.connections), "-d", f"{int(load.max_seconds)}s",
        "--timeout", "10s", "-s", str(BENCH / "wrk" / "reserve.lua"),
        f"http://127.0.0.1:{load.port}", "--", load.sku, str(load.qty), str(quota), load.tag, str(out),
        BENCH_API_KEY, str(math.ceil(load.connections / threads)),
    ]
    for stale in [*out.parent.glob(out.name + ".done.*"), *out.parent.glob(out.name + ".lat.*")]:
        stale.unlink()
    proc = procs.start(f"wrk-{load.tag}", argv)
    while _running(proc.pid) and len(list(out.parent.glob(out.name + ".done.*"))) < threads:
        time.sleep(0.05)
    if _running(proc.pid):
        proc.send_signal(signal.SIGINT)  # all quotas met: make wrk report now, not at -d
    rc, cpu = _wait_rusage(procs, proc, 60)
    if rc != 0:
        raise RuntimeError(f"wrk exited {rc}")
    raw = json.loads(out.read_text())
    timed = per_request_latency(out.parent.glob(out.name + ".lat.*"))
    st = {int(k): v for k, v in raw["status"].items()}
    elapsed = raw["active_s"]  # first request to last counted answer
    done = sum(st.values())
    errs = raw["errors"]
    lat = raw["latency_us"]
    return {
        "generator": "wrk",
        "connections": load.connections,
        "requests": done + errs["connect"] + errs["read"] + errs["write"] + errs["timeout"],
        "elapsed_s": round(elapsed, 3),
        "rps": round(done / elapsed, 1),
        "status": {
            "201": st.get(201, 0),
            "409": st.get(409, 0),
            "5xx": sum(v for k, v in st.items() if 500 <= k < 600),
            "other": sum(v for k, v in st.items() if k not in (201, 409) and not 500 <= k < 600),
            "transport_errors": errs["connect"] + errs["read"] + errs["write"] + errs["timeout"],
        },
        "error_codes": raw["error_codes"],
        "latency_ms": {k: round(v / 1000, 3) for k, v in lat.items()},
        # each answer timed from its own request (no coordinated-omission correction), all answers and
        # all but the requests that opened the connections; None for a target that does not echo ids
        "latency_ms_per_request": timed["a"],
        "latency_ms_steady": timed["s"],
        "generator_cpu_s": round(cpu, 3),
        "success_t": sorted(raw["success_t"]),  # per-thread lists, concatenated
        # wrk stops each thread at its quota and drops that thread's in-flight requests.
        "exact_accounting": False,
        "truncated": done < load.requests,
    }


def run_locust(procs: ProcessGroup, load: Load, out: Path, locust_bin: str) -> dict:
    """Run locust headless with FastHttpUser for load.max_seconds (time-bound only)."""
    argv = [
        locust_bin, "-f", str(BENCH / "locustfile.py"), "--headless", "-u", str(load.connections),
        "-r", str(load.connections), "-t", f"{int(load.max_seconds)}s", "--stop-timeout", "5",
        "-H", f"http://127.0.0.1:{load.port}", "--only-summary", "--loglevel", "WARNING",
        "--sku", load.sku, "--tag", load.tag, "--result-json", str(out),
    ]
    proc = procs.start(f"locust-{load.tag}", argv, cwd=REPO)
    rc, cpu = _wait_rusage(procs, proc, load.max_seconds + 120)
    result = json.loads(out.read_text())
    result["generator_cpu_s"] = round(cpu, 3)
    result["exit_code"] = rc
    return result


GENERATORS: dict[str, Callable[..., dict]] = {"asyncio": run_asyncio, "wrk": run_wrk, "locust": run_locust}
