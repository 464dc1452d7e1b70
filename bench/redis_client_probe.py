"""Measure redis-py EVALSHA/s under gevent for several client constructions."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402

SCRIPT = (Path(__file__).parent / "ceiling" / "reserve.lua").read_text()
MAJOR = int(redis.__version__.split(".")[0])


def _parser(name: str) -> dict:
    """Return connection kwargs that force a parser class by name."""
    if MAJOR >= 5:
        from redis._parsers import _HiredisParser, _RESP2Parser, _RESP3Parser
    mapping = {"python": _RESP2Parser, "python3": _RESP3Parser, "hiredis": _HiredisParser}
    return {"parser_class": mapping[name]}


def _no_retry() -> dict:
    """Return kwargs disabling the retry wrapper's backoff and retries."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"retry": Retry(NoBackoff(), 0)}


def build_variants(host: str, port: int) -> dict[str, Callable[[], redis.Redis]]:
    """Map variant name to a zero-arg client factory."""
    base = {"host": host, "port": port}
    v: dict[str, Callable[[], redis.Redis]] = {
        "default": lambda: redis.Redis(**base),
        "pool_max256": lambda: redis.Redis(**base, max_connections=256),
        "blocking_64": lambda: redis.Redis(
            connection_pool=redis.BlockingConnectionPool(max_connections=64, timeout=5, **base)
        ),
        "blocking_256": lambda: redis.Redis(
            connection_pool=redis.BlockingConnectionPool(max_connections=256, timeout=5, **base)
        ),
        "blocking_16": lambda: redis.Redis(
            connection_pool=redis.BlockingConnectionPool(max_connections=16, timeout=5, **base)
        ),
        "parser_python": lambda: redis.Redis(
            connection_pool=redis.ConnectionPool(max_connections=256, **base, **_parser("python"))
        ),
        "parser_hiredis": lambda: redis.Redis(
            connection_pool=redis.ConnectionPool(max_connections=256, **base, **_parser("hiredis"))
        ),
        "no_retry": lambda: redis.Redis(**base, max_connections=256, **_no_retry()),
        "health_check_30": lambda: redis.Redis(**base, max_connections=256, health_check_interval=30),
        "no_keepalive": lambda: redis.Redis(**base, max_connections=256, socket_keepalive=False),
    }
    if MAJOR >= 5:
        v["resp3"] = lambda: redis.Redis(**base, max_connections=256, protocol=3)
        v["resp2"] = lambda: redis.Redis(**base, max_connections=256, protocol=2)
        v["resp2_python"] = lambda: redis.Redis(
            connection_pool=redis.ConnectionPool(
                max_connections=256, protocol=2, **base, **_parser("python")
            )
        )
        v["resp2_blocking_64"] = lambda: redis.Redis(
            connection_pool=redis.BlockingConnectionPool(
                max_connections=64, timeout=5, protocol=2, **base
            )
        )
    if MAJOR >= 8:
        from redis.maint_notifications import MaintNotificationsConfig

        v["resp3_no_maint"] = lambda: redis.Redis(
            **base,
            max_connections=256,
            protocol=3,
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )
    return v


def run_variant(factory: Callable[[], redis.Redis], key: str, greenlets: int, seconds: float) -> dict:
    """Hammer one EVALSHA from N greenlets for a fixed time; return ops/s and latency."""
    client = factory()
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
                client.evalsha(sha, 1, key, 1)
            except Exception as exc:  # noqa: BLE001 - we count every failure class
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            n += 1
            if n % 16 == 0:
                lat.append(time.perf_counter() - t0)
        counts[i] = n

    before = int(client.get(key))
    t_start = time.perf_counter()
    gevent.joinall([gevent.spawn(worker, i) for i in range(greenlets)])
    elapsed = time.perf_counter() - t_start
    after = int(client.get(key))
    total = sum(counts)
    lat.sort()
    pool = client.connection_pool
    out = {
        "ops": total,
        "ops_per_s": round(total / elapsed, 1),
        "p50_ms": round(lat[len(lat) // 2] * 1e3, 3) if lat else None,
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 3) if lat else None,
        "errors": errors,
        "decremented_matches": before - after == total,
        "pool": type(pool).__name__,
        "max_connections": getattr(pool, "max_connections", None),
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
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", default="", help="comma list; empty = all")
    p.add_argument("--key", default="bench:probe:stock")
    args = p.parse_args(argv)
    variants = build_variants(args.host, args.port)
    names = [n for n in args.variants.split(",") if n] or list(variants)
    results: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(args.rounds):  # interleave rounds so machine noise spreads evenly
        for name in names:
            try:
                results[name].append(run_variant(variants[name], args.key, args.greenlets, args.seconds))
            except Exception as exc:  # noqa: BLE001
                results[name].append({"ops_per_s": 0.0, "fatal": repr(exc)})
    summary = {
        "redis_py": redis.__version__,
        "python": sys.version.split()[0],
        "greenlets": args.greenlets,
        "variants": {
            n: {
                "median_ops_per_s": statistics.median(r["ops_per_s"] for r in rs),
                "runs": rs,
            }
            for n, rs in results.items()
        },
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
