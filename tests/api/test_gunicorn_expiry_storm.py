"""A storm aimed at expiry boundaries over real HTTP (gunicorn, 2 gevent workers, real redis-server).

Buyers hold with a 1 s ttl, then change, check out, release or pay straight from the hold at moments
spread around their expiry, while a crowd keeps reserving (and so lazily reclaiming due holds) on
the same SKUs through the other worker. Afterwards the counters, every order and every buyer count
must agree exactly with what the clients were told.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import datetime
from collections import Counter, defaultdict
from typing import Any, Iterator

import pytest

from inventory import Inventory
from inventory.buyers import read_buyers
from inventory.holds import read_open_holds
from inventory.models import Status
from tests.api.conftest import WEBHOOK_SECRET, signed
from tests.api.http_load import Reply, _one
from tests.api.test_gunicorn_hot_sku import API_KEY, gunicorn_server  # noqa: F401 - fixture
from tests.helpers import assert_invariant, make_product, stock

BUYERS, CROWD, CROWD_SECONDS = 100, 40, 2.5
EDGE_STOCK, LIMITED_STOCK, LIMIT = 260, 120, 2
HEADERS = {"X-API-Key": API_KEY}
ACTIONS = ("grow", "shrink", "checkout", "release", "pay_hold")
DOCUMENTED = {200, 201, 202, 404, 409, 422, 429}
SOLD = {Status.PENDING_PAYMENT, Status.PAID}


@pytest.fixture
def storm_server(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[int]:
    """The gunicorn server of the hot-SKU test, also verifying webhooks."""
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("RATE_LIMIT_RESERVATIONS", "100000/second")
    yield request.getfixturevalue("gunicorn_server")


class Storm:
    """Every request and answer, and the ids the clients were given."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.replies: list[tuple[str, Reply]] = []
        self.orders: set[str] = set()
        self.paid_holds: set[str] = set()
        self.events = 0

    async def send(self, kind: str, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> Reply:
        reply = await _one("127.0.0.1", self.port, method, path, headers or HEADERS, body, timeout=30)
        self.replies.append((kind, reply))
        return reply

    async def webhook(self, target: dict[str, str], status: str) -> Reply:
        self.events += 1
        body = {"event_id": f"evt-{self.events}", "status": status, **target}
        raw, headers = signed(body, int(time.time() * 1000), msg_id=f"msg-{self.events}")
        del headers["Content-Type"]  # the client adds its own
        reply = await _one("127.0.0.1", self.port, "POST", "/v1/payments/webhook", headers, json.loads(raw),
                           timeout=30)
        self.replies.append(("webhook", reply))
        return reply


async def buyer(storm: Storm, n: int, rng: random.Random) -> None:
    user = f"buyer-{n}"
    held = await storm.send("reserve", "POST", "/v1/reservations", {
        "user_id": user, "ttl_seconds": 1, "items": [{"sku": "EDGE", "qty": 2}, {"sku": "LIM", "qty": 1}]})
    if held.status != 201:
        return
    rid = held.body["data"]["id"]
    # Aim at the expiry Redis gave this hold (same machine, same clock), from 0.6 s before to 0.3 s after:
    # under load a request's own lag pushes it later, so most still land on both sides of the boundary.
    expires = datetime.fromisoformat(held.body["data"]["expires_at"].replace("Z", "+00:00")).timestamp()
    await asyncio.sleep(max(0.0, expires - time.time() + rng.uniform(-0.6, 0.3)))
    action = ACTIONS[n % len(ACTIONS)]
    path = f"/v1/reservations/{rid}"
    if action in ("grow", "shrink"):
        qty = 3 if action == "grow" else 1
        await storm.send(action, "PATCH", path, {"user_id": user, "items": [{"sku": "EDGE", "qty": qty},
                                                                             {"sku": "LIM", "qty": 2}]})
        action = "checkout" if rng.random() < 0.7 else "release"
    if action == "release":
        await storm.send("release", "DELETE", f"{path}?user_id={user}")
    elif action == "pay_hold":
        reply = await storm.webhook({"reservation_id": rid}, "paid")
        if reply.status == 200 and reply.body["data"]["order_id"]:
            storm.orders.add(reply.body["data"]["order_id"])
    else:
        reply = await storm.send("checkout", "POST", f"{path}/checkout", {"user_id": user})
        if reply.status == 202:
            order_id = reply.body["data"]["id"]
            storm.orders.add(order_id)
            roll = rng.random()
            if roll < 0.5:
                await storm.webhook({"order_id": order_id}, "paid")
            elif roll < 0.75:
                await storm.webhook({"order_id": order_id}, "failed")


async def crowd(storm: Storm, n: int, rng: random.Random) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.3)  # the buyers' holds first, then the crowd that reclaims them
    deadline = loop.time() + CROWD_SECONDS
    i = 0
    while loop.time() < deadline:
        i += 1
        user = f"crowd-{n}-{i}"
        items = [{"sku": "EDGE", "qty": 1}] + ([{"sku": "LIM", "qty": 1}] if i % 3 == 0 else [])
        held = await storm.send("crowd_reserve", "POST", "/v1/reservations",
                                {"user_id": user, "ttl_seconds": 1, "items": items})
        if held.status == 201 and rng.random() < 0.2:
            reply = await storm.send("crowd_checkout", "POST", f"/v1/reservations/{held.body['data']['id']}/checkout",
                                     {"user_id": user})
            if reply.status == 202:
                storm.orders.add(reply.body["data"]["id"])
        await asyncio.sleep(rng.uniform(0, 0.05))


async def run_storm(storm: Storm) -> None:
    rng = random.Random(1212)
    await asyncio.gather(*(buyer(storm, n, random.Random(rng.random())) for n in range(BUYERS)),
                         *(crowd(storm, n, random.Random(rng.random())) for n in range(CROWD)))


@pytest.mark.single_node("aimed at 1 s expiry boundaries by wall time; on the cluster, under a loaded 2-core box, "
                         "every action lands after its expiry; the cluster's expiry races are covered by the "
                         "multi-part machine and the concurrency tier")
def test_changes_checkouts_and_payments_landing_around_expiry_keep_every_count_exact(
        storm_server: int, real_redis: Any, settings: Any) -> None:
    inv = Inventory(real_redis, settings)
    make_product(inv, "EDGE", stock=EDGE_STOCK)
    make_product(inv, "LIM", stock=LIMITED_STOCK, limit=LIMIT)
    storm = Storm(storm_server)
    asyncio.run(run_storm(storm))

    statuses = Counter((kind, reply.status) for kind, reply in storm.replies)
    print(sorted(Counter((kind, reply.status, reply.body.get("error", {}).get("code", "") if isinstance(reply.body, dict)
                          else "") for kind, reply in storm.replies).items()))
    assert all(reply.status in DOCUMENTED for _, reply in storm.replies), statuses
    assert all(isinstance(reply.body, dict) and (reply.status < 400 or reply.body["error"]["code"])
               for _, reply in storm.replies)
    assert statuses[("grow", 409)] + statuses[("shrink", 409)] > 0, "no change landed after its expiry"
    assert statuses[("grow", 200)] + statuses[("shrink", 200)] > 0, "no change landed before its expiry"

    time.sleep(1.2)  # every hold of the storm is due now (1 s ttl)
    inv.reservations.expire_due()
    sold_units: Counter[str] = Counter()
    limited_units: dict[str, int] = defaultdict(int)
    for order_id in storm.orders:
        order = inv.reservations.get_order(order_id)
        if order.status in SOLD:
            for line in order.lines:
                sold_units[line.sku] += line.qty
                if line.sku == "LIM":
                    limited_units[order.user_id] += line.qty
    for sku, total in (("EDGE", EDGE_STOCK), ("LIM", LIMITED_STOCK)):
        level = stock(inv, sku)
        assert_invariant(level)
        assert level.held == 0 and level.total == total
        assert level.sold == sold_units[sku], (sku, level, sold_units)
    buyers = read_buyers(real_redis, inv.keys.sku("LIM"))
    assert buyers == {user: units for user, units in limited_units.items() if units}
    assert max(buyers.values(), default=0) <= LIMIT
    assert read_buyers(real_redis, inv.keys.sku("EDGE")) == {}
    assert read_open_holds(real_redis, inv.keys.sku("EDGE")) == read_open_holds(real_redis, inv.keys.sku("LIM")) == []
