"""Purpose-built closed-loop HTTP/1.1 load generator: asyncio streams, keep-alive, HDR histogram.

Each of C connections sends POST /v1/reservations bodies with a distinct user id
per request until `total` requests have been issued, then drains; every issued
request is answered or counted as a transport error, so client-side success
counts are exact. Writes one JSON document (summary + per-success timestamps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram

MAX_LATENCY_US = 60_000_000


@dataclass
class Tally:
    """Mutable counters shared by all connection tasks."""

    issued: int = 0
    status: dict[int, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    transport_errors: int = 0
    success_t: list[float] = field(default_factory=list)
    hist: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, MAX_LATENCY_US, 3))


def _request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _error_code(body: bytes) -> str:
    """Cheap extraction of error.code from flashstock's error shape."""
    i = body.find(b'"code"')
    if i < 0:
        return "none"
    j = body.find(b'"', body.find(b":", i) + 1)
    return body[j + 1 : body.find(b'"', j + 1)].decode(errors="replace")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    i = lower.find(b"content-length:")
    n = int(lower[i + 15 : lower.find(b"\r\n", i)]) if i >= 0 else 0
    return status, await reader.readexactly(n) if n else b""


async def _connection(
    host: str,
    port: int,
    path: str,
    sku: str,
    qty: int,
    total: int,
    tag: str,
    tally: Tally,
    t0: float,
    deadline: float,
) -> None:
    reader = writer = None
    while tally.issued < total and time.perf_counter() < deadline:
        i = tally.issued
        tally.issued += 1
        body = json.dumps({"user_id": f"{tag}-{i}", "items": [{"sku": sku, "qty": qty}]}).encode()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            start = time.perf_counter()
            writer.write(_request_bytes(host, port, path, body))
            status, resp = await _read_response(reader)
            end = time.perf_counter()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            tally.transport_errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        tally.hist.record_value(max(1, int((end - start) * 1e6)))
        tally.status[status] = tally.status.get(status, 0) + 1
        if status == 201:
            tally.success_t.append(end - t0)
        elif status >= 400:
            code = _error_code(resp)
            tally.codes[code] = tally.codes.get(code, 0) + 1
    if writer is not None:
        writer.close()


def summarize(tally: Tally, elapsed: float, cpu_s: float, connections: int) -> dict:
    """Counters, percentiles and throughput in the harness's common result shape."""
    st = tally.status
    done = sum(st.values())
    h = tally.hist
    return {
        "generator": "asyncio",
        "connections": connections,
        "requests": done + tally.transport_errors,
        "elapsed_s": round(elapsed, 3),
        "rps": round(done / elapsed, 1) if elapsed else 0.0,
        "status": {
            "201": st.get(201, 0),
            "409": st.get(409, 0),
            "5xx": sum(v for k, v in st.items() if 500 <= k < 600),
            "other": sum(v for k, v in st.items() if k not in (201, 409) and not 500 <= k < 600),
            "transport_errors": tally.transport_errors,
        },
        "error_codes": tally.codes,
        "latency_ms": {
            k: round(h.get_value_at_percentile(p) / 1000, 3) if done else None
            for k, p in (("p50", 50), ("p95", 95), ("p99", 99), ("p999", 99.9))
        }
        | {"max": round(h.get_max_value() / 1000, 3) if done else None},
        "generator_cpu_s": round(cpu_s, 3),
        "success_t": [round(t, 6) for t in tally.success_t],
    }


async def run(
    host: str,
    port: int,
    path: str,
    sku: str,
    qty: int,
    connections: int,
    total: int,
    tag: str,
    max_seconds: float,
) -> dict:
    """Drive `total` requests over `connections` keep-alive connections, issuing none after max_seconds."""
    tally = Tally()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    await asyncio.gather(
        *(
            _connection(host, port, path, sku, qty, total, tag, tally, t0, deadline)
            for _ in range(connections)
        )
    )
    elapsed = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    result = summarize(tally, elapsed, cpu, connections)
    result["truncated"] = tally.issued < total
    result["exact_accounting"] = True
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI: run one load and write the JSON result."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/v1/reservations")
    p.add_argument("--sku", default="hot-1")
    p.add_argument("--qty", type=int, default=1)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--max-seconds", type=float, default=600.0, help="stop issuing after this")
    p.add_argument("--tag", default="u", help="user id prefix; ids are TAG-<n>")
    p.add_argument("--uvloop", action="store_true", help="use uvloop if installed")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if a.uvloop:
        import uvloop

        uvloop.install()
    result = asyncio.run(run(a.host, a.port, a.path, a.sku, a.qty, a.connections, a.requests, a.tag, a.max_seconds))
    a.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
