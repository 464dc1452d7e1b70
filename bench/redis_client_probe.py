"""Measure redis-py EVALSHA/s under gevent for several client constructions.

Runs in any venv with redis + gevent (redis-py 5.x or 8.x); variants that a
version does not support are skipped. Rounds are interleaved so that machine
noise spreads evenly over variants; client CPU per op is reported as well
because it is far less noisy than ops/s on a shared box.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.ceiling.redis_clients import (  # noqa: E402
    direct_evalsha,
    lean_client,
    tuned_client,
)

SCRIPT = (Path(__file__).parent / "ceiling" / "reserve.lua").read_text()
MAJOR = int(redis.__version__.split(".")[0])
Call = Callable[[str, str], Any]
Variant = Callable[[], tuple[redis.Redis, Call]]


def _parser(name: str) -> dict:
    """Connection kwargs forcing a parser class by name."""
    from redis._parsers import _HiredisParser, _RESP2Parser, _RESP3Parser

    mapping = {"python": _RESP2Parser, "python3": _RESP3Parser, "hiredis": _HiredisParser}
    return {"parser_class": mapping[name]}


def _via_client(client: redis.Redis) -> tuple[redis.Redis, Call]:
    """Use the normal Redis.evalsha path."""
    return client, lambda sha, key: client.evalsha(sha, 1, key, 1)


def _via_direct(client: redis.Redis) -> tuple[redis.Redis, Call]:
    """Use the connection-level path (no Redis.execute_command wrapper)."""
    return client, lambda sha, key: direct_evalsha(client, sha, 1, key, 1)


def _blocking(n: int, **kw: Any) -> redis.Redis:
    """Redis client over a BlockingConnectionPool of n connections."""
    return redis.Redis(connection_pool=redis.BlockingConnectionPool(max_connections=n, timeout=5, **kw))


def build_variants(host: str, port: int) -> dict[str, Variant]:
    """Map variant name to a factory returning (client, call)."""
    b = {"host": host, "port": port}
    v: dict[str, Variant] = {
        "default": lambda: _via_client(redis.Redis(**b)),
        "pool_256": lambda: _via_client(redis.Redis(**b, max_connections=256)),
        "blocking_16": lambda: _via_client(_blocking(16, **b)),
        "blocking_64": lambda: _via_client(_blocking(64, **b)),
        "blocking_256": lambda: _via_client(_blocking(256, **b)),
    }
    if MAJOR >= 5:
        v["resp2"] = lambda: _via_client(_blocking(64, protocol=2, **b))
        v["resp3"] = lambda: _via_client(_blocking(64, protocol=3, **b))
        v["parser_python"] = lambda: _via_client(_blocking(64, **b, **_parser("python")))
        v["parser_hiredis"] = lambda: _via_client(_blocking(64, **b, **_parser("hiredis")))
    if MAJOR >= 8:
        v["tuned"] = lambda: _via_client(tuned_client(host, port, 64))
        v["tuned_direct"] = lambda: _via_direct(tuned_client(host, port, 64))
        v["lean_direct"] = lambda: _via_direct(lean_client(host, port, 64))
        v["tuned_16"] = lambda: _via_client(tuned_client(host, port, 16))
        v["tuned_direct_16"] = lambda: _via_direct(tuned_client(host, port, 16))
        v["lean_direct_16"] = lambda: _via_direct(lean_client(host, port, 16))
    return v


def run_variant(make: Variant, key: str, greenlets: int, seconds: float) -> dict:
    """Hammer one EVALSHA from N greenlets for a fixed time; return ops/s, CPU/op, latency."""
    client, call = make()
    sha = client.script_load(SCRIPT)
    client.set(key, 10**15)
    counts = [0] * greenlets
    lat: list[float] = []
    errors: dict[str, int] = {}
    stop_at = time.perf_counter() + seconds

    def worker(i: int) -> None:
        n = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                break
            try:
                call(sha, key)
            except Exception as exc:  # noqa: BLE001 - every failure class is counted
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                gevent.sleep(0)
                continue
            n += 1
            if n % 8 == 0:
                lat.append(time.perf_counter() - t0)
        counts[i] = n

    before = int(client.get(key))
    cpu0, t0 = time.process_time(), time.perf_counter()
    gevent.joinall([gevent.spawn(worker, i) for i in range(greenlets)])
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    total = sum(counts)
    after = int(client.get(key))
    lat.sort()
    out = {
        "ops_per_s": round(total / elapsed, 1),
        "client_cpu_us_per_op": round(cpu / max(total, 1) * 1e6, 2),
        "p50_ms": round(lat[len(lat) // 2] * 1e3, 3) if lat else None,
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 3) if lat else None,
        "errors": errors,
        "counts_match": before - after == total,
        # BlockingConnectionPool is not fair under gevent: with fewer connections than greenlets a
        # releasing greenlet re-acquires before a woken waiter runs, so waiters can starve.
        "starved_greenlets": sum(1 for c in counts if c == 0),
    }
    client.delete(key)
    client.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6379)
    p.add_argument("--greenlets", type=int, default=64)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", default="", help="comma list; empty = all")
    p.add_argument("--key", default="bench:probe:stock")
    args = p.parse_args(argv)
    variants = build_variants(args.host, args.port)
    names = [n for n in args.variants.split(",") if n in variants] or list(variants)
    results: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            try:
                results[name].append(run_variant(variants[name], args.key, args.greenlets, args.seconds))
            except Exception as exc:  # noqa: BLE001
                results[name].append({"ops_per_s": 0.0, "client_cpu_us_per_op": 0.0, "fatal": repr(exc)})
    summary = {
        "redis_py": redis.__version__,
        "hiredis_installed": _hiredis_version(),
        "greenlets": args.greenlets,
        "variants": {
            n: {
                "median_ops_per_s": statistics.median(r["ops_per_s"] for r in rs),
                "median_cpu_us_per_op": statistics.median(r["client_cpu_us_per_op"] for r in rs),
                "runs": rs,
            }
            for n, rs in results.items()
        },
    }
    print(json.dumps(summary, indent=1))
    return 0


def _hiredis_version() -> str | None:
    """Installed hiredis version, if any."""
    try:
        import hiredis

        return hiredis.__version__
    except ImportError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
