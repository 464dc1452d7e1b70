"""Idempotency-Key under a storm over real HTTP (gunicorn, 2 gevent workers, real redis-server): per key,
the owner's requests with two different bodies and another user's requests, all at once."""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

from inventory import Inventory
from tests.api.http_load import Reply, fire
from tests.api.test_gunicorn_hot_sku import API_KEY, _get, gunicorn_server  # noqa: F401 - fixture
from tests.helpers import assert_invariant, make_product, stock

KEYS, EACH = 100, 5  # per key: 5 x owner body A, 5 x owner body B, 5 x another user's body
CONCURRENCY = 300
IN_PROGRESS = "idempotency_request_in_progress"


def _code(reply: Reply) -> str | None:
    return reply.body["error"]["code"] if isinstance(reply.body, dict) and "error" in reply.body else None


def _metric(text: str, outcome: str) -> int:
    found = re.search(rf'flashstock_checkouts_total\{{outcome="{outcome}"\}} ([0-9.]+)', text)
    return int(float(found.group(1))) if found else 0


def test_same_key_storm_runs_once_per_key_and_refuses_every_other_body(gunicorn_server, real_redis, settings):
    port = gunicorn_server
    inv = Inventory(real_redis, settings)
    make_product(inv, "HOT", stock=2 * KEYS)
    plan: list[tuple[str, int, tuple[str, str, dict[str, str], Any]]] = []  # (group, key index, request)
    holds: dict[int, tuple[str, str]] = {}
    for k in range(KEYS):
        owner, other = f"owner-{k}", f"other-{k}"
        a, b = (inv.reservations.reserve(owner, {"HOT": 1}).id for _ in range(2))
        holds[k] = (a, b)
        headers = {"X-API-Key": API_KEY, "Idempotency-Key": f"storm-{k}"}
        for group, rid, user in (("A", a, owner), ("B", b, owner), ("other", a, other)):
            plan += [(group, k, ("POST", f"/v1/reservations/{rid}/checkout", headers, {"user_id": user}))
                     for _ in range(EACH)]
    plan = plan[0::2] + plan[1::2]  # interleave the groups of each key

    replies: list[Reply | None] = [None] * len(plan)
    pending, rounds, in_progress = list(range(len(plan))), 0, 0
    while pending:  # a duplicate past its wait gets 409 in progress + Retry-After: do as a client would
        rounds += 1
        assert rounds <= 20, "requests still in progress after 20 rounds"
        answers = fire("127.0.0.1", port, [plan[i][2] for i in pending], concurrency=CONCURRENCY)
        for i, reply in zip(pending, answers):
            replies[i] = reply
        pending = [i for i in pending if _code(replies[i]) == IN_PROGRESS]  # type: ignore[arg-type]
        in_progress += len(pending)
        if pending:
            time.sleep(1)

    by_key: dict[int, dict[str, list[Reply]]] = {k: {"A": [], "B": [], "other": []} for k in range(KEYS)}
    for (group, k, _), reply in zip(plan, replies):
        by_key[k][group].append(reply)  # type: ignore[arg-type]
    statuses = Counter(r.status for r in replies)  # type: ignore[union-attr]
    winners = Counter()
    for k, groups in by_key.items():
        a, b = holds[k]
        checked_out = [rid for rid in (a, b) if inv.reservations.get(rid).status.value == "pending_payment"]
        # The owner's operation happened exactly once: one of the two bodies ran, the other never did.
        assert len(checked_out) == 1, (k, checked_out)
        won, lost = ("A", "B") if checked_out == [a] else ("B", "A")
        winners[won] += 1
        assert {(r.status, r.body["data"]["reservation_id"]) for r in groups[won]} == {(202, checked_out[0])}, k
        assert len({r.body["data"]["order_id"] for r in groups[won]}) == 1, k
        assert [_code(r) for r in groups[lost]] == ["idempotency_key_reused"] * EACH, k
        # Another user's request with the same key text is that user's own key: it cannot poison the owner's.
        assert [_code(r) for r in groups["other"]] == ["reservation_not_found"] * EACH, k
        assert len(inv.redis.zrange(inv.keys.of_sku("HOT").user_orders(f"owner-{k}"), 0, -1)) == 1, k

    status, text = _get(port, "/metrics")
    assert status == 200
    runs = {outcome: _metric(text, outcome) for outcome in ("created", "replayed", "reservation_not_found")}
    print(f"\nidempotency storm over HTTP (gunicorn, 2 gevent workers): keys={KEYS} requests={len(plan)} "
          f"(per key {EACH} owner body A + {EACH} owner body B + {EACH} other user) concurrency={CONCURRENCY} "
          f"statuses={dict(sorted(statuses.items()))} 422={statuses[422]} in_progress_409={in_progress} "
          f"rounds={rounds} winners={dict(winners)} checkout runs={runs}")
    # Exactly one run per key and scope: 100 owner checkouts, none repeated; one 404 run per other user.
    assert runs == {"created": KEYS, "replayed": 0, "reservation_not_found": KEYS}
    assert statuses[422] == KEYS * EACH and statuses[202] == KEYS * EACH and statuses[404] == KEYS * EACH
    level = stock(inv, "HOT")
    assert (level.held, level.sold) == (KEYS, KEYS)  # per key one hold checked out (sold), the other held
    assert_invariant(level)
