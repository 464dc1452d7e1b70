"""Closed-loop asyncio client for the full flow: reserve -> checkout -> signed payment webhook.

Each virtual user owns one keep-alive connection and runs flows back to back until the deadline; a
flow that has started is always finished, so every order the server accepted is known to the client
(exact accounting). Latency per step goes into an HDR histogram, as in bench/loadgen.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hdrh.histogram import HdrHistogram
from standardwebhooks.webhooks import Webhook

from bench.loadgen import MAX_LATENCY_US, _error_code, _read_response

STEPS = ("reserve", "checkout", "webhook")
# Status each step answers with when it worked (201 hold, 202 order accepted, 200 payment applied).
OK_STATUS = {"reserve": 201, "checkout": 202, "webhook": 200}
TRANSPORT_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


@dataclass
class StepStats:
    """Answers of one step: status counts, error codes, transport errors, latency histogram."""

    status: dict[int, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    transport_errors: int = 0
    hist: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, MAX_LATENCY_US, 3))

    def record(self, status: int, latency_s: float, body: bytes) -> None:
        """Count one answer."""
        self.hist.record_value(max(1, int(latency_s * 1e6)))
        self.status[status] = self.status.get(status, 0) + 1
        if status >= 400:
            code = _error_code(body)
            self.codes[code] = self.codes.get(code, 0) + 1

    def summary(self, elapsed_s: float) -> dict:
        """Counts, requests/s and latency percentiles (ms)."""
        done = sum(self.status.values())
        h = self.hist
        lat = {k: round(h.get_value_at_percentile(p) / 1000, 3) if done else None
               for k, p in (("p50", 50), ("p95", 95), ("p99", 99), ("p999", 99.9))}
        lat["max"] = round(h.get_max_value() / 1000, 3) if done else None
        return {
            "requests": done + self.transport_errors,
            "rps": round(done / elapsed_s, 1) if elapsed_s else 0.0,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "5xx": sum(v for k, v in self.status.items() if k >= 500),
            "transport_errors": self.transport_errors,
            "error_codes": dict(sorted(self.codes.items())),
            "latency_ms": lat,
        }


@dataclass
class Flow:
    """One virtual user's purchase attempt and what the server said at each step."""

    index: int
    user: str
    sku: str
    pay: str  # 'paid' | 'failed': what the payment provider will report
    outcome: str = "started"  # completed | sold_out | <step>_rejected | <step>_error
    reservation_id: str | None = None
    order_id: str | None = None
    t_checkout_sent: float | None = None  # wall clock (epoch s) when the checkout request was sent
    t_checkout: float | None = None  # wall clock (epoch s) when the checkout's 202 arrived
    status: str | None = None  # order status in the webhook's answer


@dataclass(frozen=True)
class FlowConfig:
    """What the client sends and to whom."""

    host: str
    port: int
    api_key: str
    webhook_secret: str
    skus: tuple[str, ...]  # flow i uses skus[i % len(skus)]
    sold_out_ok: frozenset[str] = frozenset()  # SKUs where a 409 sold_out ends a flow normally
    fail_ratio: float = 0.2
    tag: str = "flow"
    seed: int = 1


@dataclass
class FlowRun:
    """Everything one load phase produced."""

    flows: list[Flow] = field(default_factory=list)
    steps: dict[str, StepStats] = field(default_factory=lambda: {s: StepStats() for s in STEPS})
    next_index: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0


def _request(cfg: FlowConfig, path: str, payload: dict, extra: str = "") -> tuple[bytes, bytes]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {cfg.host}:{cfg.port}\r\nX-API-Key: {cfg.api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n")
    return head.encode() + body, body


def webhook_headers(hook: Webhook, msg_id: str, body: bytes, now: datetime | None = None) -> str:
    """Standard Webhooks headers (id, timestamp, v1 signature) for one body, as HTTP header lines."""
    moment = now or datetime.now(tz=UTC)
    signature = hook.sign(msg_id, moment, body.decode())
    return (f"webhook-id: {msg_id}\r\nwebhook-timestamp: {int(moment.timestamp())}\r\n"
            f"webhook-signature: {signature}\r\n")


class _Conn:
    """One keep-alive connection, reopened after a transport error."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, data: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(data)
        return await _read_response(self.reader)  # type: ignore[arg-type]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _step(conn: _Conn, run: FlowRun, name: str, data: bytes) -> tuple[int, bytes] | None:
    """Send one request; None on a transport error (the connection is dropped)."""
    start = time.perf_counter()
    try:
        status, body = await conn.send(data)
    except TRANSPORT_ERRORS:
        run.steps[name].transport_errors += 1
        conn.close()
        return None
    run.steps[name].record(status, time.perf_counter() - start, body)
    return status, body


async def _one_flow(cfg: FlowConfig, hook: Webhook, conn: _Conn, run: FlowRun, flow: Flow) -> None:
    data, _ = _request(cfg, "/v1/reservations", {"user_id": flow.user, "items": [{"sku": flow.sku, "qty": 1}]})
    answer = await _step(conn, run, "reserve", data)
    if answer is None or answer[0] != OK_STATUS["reserve"]:
        sold_out = answer is not None and answer[0] == 409 and _error_code(answer[1]) == "sold_out"
        flow.outcome = "reserve_error" if answer is None else \
            ("sold_out" if sold_out and flow.sku in cfg.sold_out_ok else "reserve_rejected")
        return
    flow.reservation_id = json.loads(answer[1])["data"]["id"]
    data, _ = _request(cfg, f"/v1/reservations/{flow.reservation_id}/checkout", {"user_id": flow.user})
    flow.t_checkout_sent = time.time()
    answer = await _step(conn, run, "checkout", data)
    if answer is None or answer[0] != OK_STATUS["checkout"]:
        flow.outcome = "checkout_error" if answer is None else "checkout_rejected"
        return
    flow.t_checkout = time.time()
    flow.order_id = json.loads(answer[1])["data"]["order_id"]
    payload = {"event_id": f"evt-{flow.user}", "order_id": flow.order_id, "status": flow.pay}
    body = json.dumps(payload, separators=(",", ":")).encode()
    data, _ = _request(cfg, "/v1/payments/webhook", payload, webhook_headers(hook, f"msg-{flow.user}", body))
    answer = await _step(conn, run, "webhook", data)
    if answer is None or answer[0] != OK_STATUS["webhook"]:
        flow.outcome = "webhook_error" if answer is None else "webhook_rejected"
        return
    flow.status = json.loads(answer[1])["data"]["status"]
    flow.outcome = "completed"


async def _user(cfg: FlowConfig, hook: Webhook, run: FlowRun, deadline: float, rng: random.Random) -> None:
    conn = _Conn(cfg.host, cfg.port)
    try:
        while time.perf_counter() < deadline:
            i = run.next_index
            run.next_index += 1
            flow = Flow(i, f"{cfg.tag}-{i}", cfg.skus[i % len(cfg.skus)],
                        "failed" if rng.random() < cfg.fail_ratio else "paid")
            run.flows.append(flow)
            await _one_flow(cfg, hook, conn, run, flow)
    finally:
        conn.close()


async def drive(cfg: FlowConfig, connections: int, seconds: float, run: FlowRun | None = None,
                during: Callable[[], object] | None = None) -> FlowRun:
    """Run virtual users for `seconds` (no flow starts after that); `during` may return an awaitable
    started alongside (e.g. a sampler or a fault schedule) and cancelled at the end."""
    run = run or FlowRun()
    hook = Webhook(cfg.webhook_secret)
    rng = random.Random(cfg.seed)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    side = asyncio.ensure_future(during()) if during is not None else None  # type: ignore[arg-type]
    try:
        await asyncio.gather(*(_user(cfg, hook, run, t0 + seconds, random.Random(rng.random()))
                               for _ in range(connections)))
    finally:
        if side is not None:
            side.cancel()
            await asyncio.gather(side, return_exceptions=True)
    run.elapsed_s += time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    run.cpu_s += (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return run


def summarize(run: FlowRun, connections: int) -> dict:
    """Flows and per-step figures of one phase, in the result document's shape."""
    outcomes: dict[str, int] = {}
    for f in run.flows:
        outcomes[f.outcome] = outcomes.get(f.outcome, 0) + 1
    completed = outcomes.get("completed", 0)
    el = run.elapsed_s
    return {
        "connections": connections,
        "elapsed_s": round(el, 3),
        "flows": len(run.flows),
        "outcomes": dict(sorted(outcomes.items())),
        "completed_flows_per_s": round(completed / el, 1) if el else 0.0,
        "checkouts_per_s": round(sum(f.t_checkout is not None for f in run.flows) / el, 1) if el else 0.0,
        "paid": sum(f.status == "paid" for f in run.flows),
        "payment_failed": sum(f.status == "payment_failed" for f in run.flows),
        "steps": {name: s.summary(el) for name, s in run.steps.items()},
        "requests_per_s": round(sum(sum(s.status.values()) for s in run.steps.values()) / el, 1) if el else 0.0,
        "generator_cpu_s": round(run.cpu_s, 3),
    }
