"""The storefront and payment provider as HTTP clients, and the client witness: every answer they got."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import urllib3
from standardwebhooks.webhooks import Webhook

from chaos.stack import ADMIN_KEY, STOREFRONT_KEY

TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange as the client saw it; status 0 = no answer (connection refused, reset, timeout)."""

    op: str
    status: int
    code: str | None
    data: dict[str, Any] | None
    t_sent: float
    t_done: float
    port: int
    expect: str = ""  # the error code a deliberately bad request must get ("" = a well-formed request)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Witness:
    """The client's record of the sale: what was asked, what was acknowledged (thread-safe appends)."""

    answers: list[Answer] = field(default_factory=list)
    reservations: dict[str, dict[str, Any]] = field(default_factory=dict)  # rid -> {user, lines, t}
    checkout_tried: set[str] = field(default_factory=set)  # reservation ids a checkout or 'paid' targeted
    checkouts: dict[str, tuple[str, float, float]] = field(default_factory=dict)  # rid -> (order, acked, sent)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)  # event -> {order, sent, status, t, t0}
    order_status: dict[str, tuple[float, str, float]] = field(default_factory=dict)  # order -> (acked, status, sent)
    keyed: dict[str, set[str]] = field(default_factory=dict)  # Idempotency-Key -> ids it was answered with
    bad_webhooks: set[str] = field(default_factory=set)  # event ids only ever sent forged or stale
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, answer: Answer) -> Answer:
        with self.lock:
            self.answers.append(answer)
        return answer

    def acknowledged(self) -> int:
        return sum(1 for a in self.answers if a.ok)


class Client:
    """Storefront, admin and payment-provider calls against one or more API servers, recorded in a Witness."""

    def __init__(self, ports: list[int], secret: str, witness: Witness) -> None:
        self.ports = ports
        self.pool = urllib3.PoolManager(num_pools=4, maxsize=64, retries=False,
                                        timeout=urllib3.Timeout(connect=5.0, read=TIMEOUT_S))
        self.hook = Webhook(secret)
        self.witness = witness
        self._turn = itertools.count()

    def request(self, op: str, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
                raw: bytes | None = None, port: int | None = None, expect: str = "", admin: bool = False,
                record: bool = True) -> Answer:
        """One call; never raises for transport errors (they are answers with status 0)."""
        port = port or self.ports[next(self._turn) % len(self.ports)]
        hdrs = {"X-API-Key": ADMIN_KEY if admin else STOREFRONT_KEY, **(headers or {})}
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if payload is not None:
            hdrs["Content-Type"] = "application/json"
        t0 = time.time()
        try:
            reply = self.pool.request(method, f"http://127.0.0.1:{port}{path}", body=payload, headers=hdrs)
            status, parsed = reply.status, _json(reply.data)
        except urllib3.exceptions.HTTPError:
            status, parsed = 0, None
        code = parsed.get("error", {}).get("code") if isinstance(parsed, dict) and status >= 400 else None
        data = parsed.get("data") if isinstance(parsed, dict) and isinstance(parsed.get("data"), dict) else None
        answer = Answer(op, status, code, data, t0, time.time(), port, expect)
        return self.witness.add(answer) if record else answer

    def signed(self, body: dict[str, Any], *, msg_id: str, at: float | None = None,
               forge: bool = False) -> tuple[bytes, dict[str, str]]:
        """A Standard Webhooks request: body bytes and headers, signed now (or at `at`), or forged."""
        raw = json.dumps(body).encode()
        moment = datetime.fromtimestamp(int(at or time.time()), tz=timezone.utc)
        signature = self.hook.sign(msg_id, moment, raw.decode())
        if forge:
            signature = "v1," + signature.split(",", 1)[1][::-1]
        return raw, {"webhook-id": msg_id, "webhook-timestamp": str(int(moment.timestamp())),
                     "webhook-signature": signature}

    def webhook(self, op: str, body: dict[str, Any], *, msg_id: str, at: float | None = None, forge: bool = False,
                expect: str = "", port: int | None = None) -> Answer:
        raw, headers = self.signed(body, msg_id=msg_id, at=at, forge=forge)
        return self.request(op, "POST", "/v1/payments/webhook", raw=raw, headers=headers, expect=expect, port=port)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None
