"""The sold-out cache forgets a SKU on every kind of return (real redis-server and the cluster).

Its time-to-live is set to a minute, so only the scripts' announcement can explain a unit being sold
again within the test.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from inventory import Inventory
from inventory.errors import InvalidArgument, SoldOut
from inventory.persistence import persist_now
from inventory.reconcile import run_reconciliation
from inventory.soldout import SoldOutCache, SoldOutListener
from inventory.store import masters
from tests.clocks import ManualClock
from tests.helpers import make_product, stock


def _cache(inv: Inventory, stock_key_of: Any = None) -> Iterator[SoldOutCache]:
    cache = SoldOutCache(60_000, stock_key_of or (lambda sku: inv.keys.sku(sku).stock))
    inv.reservations.soldout = cache
    listener = SoldOutListener(cache, lambda: masters(inv.redis)[0], inv.keys.stock_pattern)
    listener.ensure_started()
    deadline = time.monotonic() + 10
    while not cache.listening:
        assert time.monotonic() < deadline, "the listener never subscribed"
        time.sleep(0.01)
    yield cache
    listener.stop()


@pytest.fixture
def cache(real_inv: Inventory) -> Iterator[SoldOutCache]:
    yield from _cache(real_inv)


def _learn(inv: Inventory, cache: SoldOutCache) -> None:
    """A refusal from the script, then one from memory. The setup's own announcements (stock added,
    units held) can reach the listener after the first refusal began, which rightly stops the cache from
    learning from it (on the cluster, seen once in CI): then the next refusal teaches it."""
    deadline = time.monotonic() + 5
    while True:
        answered = cache.answered
        with pytest.raises(SoldOut) as refused:
            inv.reservations.reserve("bot", {"A": 1})
        if getattr(refused.value, "cached", False):
            assert cache.answered == answered + 1
            return
        assert time.monotonic() < deadline, "the cache never learned the refusal"


def _sold_again(inv: Inventory, cache: SoldOutCache) -> None:
    deadline = time.monotonic() + 5
    while cache.knows("A"):
        assert time.monotonic() < deadline, "the cache never heard that units came back"
        time.sleep(0.005)
    inv.reservations.reserve("buyer", {"A": 1})


@pytest.mark.parametrize("how", ["release", "sweep_expiry", "failed_payment", "payment_deadline", "amend_shrink",
                                 "admin_add", "lapsed_offer"])
def test_every_kind_of_return_is_announced(real_inv: Inventory, cache: SoldOutCache, clock: ManualClock,
                                           how: str) -> None:
    inv = real_inv
    make_product(inv, "A", stock=3)
    first = inv.reservations.reserve("u1", {"A": 2}, ttl_seconds=60)
    inv.reservations.reserve("u2", {"A": 1}, ttl_seconds=3600)
    if how in ("failed_payment", "payment_deadline"):
        order = inv.reservations.checkout(first.id)
    if how == "lapsed_offer":
        inv.waitlists.join("A", "wendy", 1)
        inv.reservations.amend(first.id, {"A": 1})  # the unit is set aside for wendy, not announced
        assert inv.waitlists.get("A", "wendy").status == "offered"
    _learn(inv, cache)
    if how == "release":
        inv.reservations.release(first.id)
    elif how == "sweep_expiry":
        clock.advance(60)
        inv.reservations.expire_due()
    elif how == "failed_payment":
        inv.reservations.record_payment(event_id="f", result="failed", order_id=order.id)
    elif how == "payment_deadline":
        clock.advance(inv.settings.payment_ttl_seconds)
        inv.reservations.expire_due()
    elif how == "amend_shrink":
        inv.reservations.amend(first.id, {"A": 1})
    elif how == "admin_add":
        inv.catalog.adjust_stock("A", add=1)
    else:
        clock.advance(inv.settings.waitlist_claim_seconds)
        inv.sweep()  # the offer lapsed and nobody else waits: the unit is available again
    _sold_again(inv, cache)


def test_a_reconcile_repair_that_frees_units_is_announced(real_inv: Inventory, cache: SoldOutCache,
                                                          pg_sessions) -> None:
    inv = real_inv
    make_product(inv, "A", stock=2)
    inv.reservations.reserve("u1", {"A": 1}, ttl_seconds=3600)
    persist_now(inv, pg_sessions)
    inv.redis.hincrby(inv.keys.sku("A").stock, "held", 1)  # drift: a hold Redis does not have
    inv.redis.hincrby(inv.keys.sku("A").stock, "avail", -1)
    _learn(inv, cache)
    assert not run_reconciliation(inv, pg_sessions, repair=True, full=True).clean
    _sold_again(inv, cache)
    assert stock(inv, "A").available == 0


def test_a_hold_expiring_unswept_is_sold_by_the_next_request_after_it(real_redis, settings) -> None:
    inv = Inventory(real_redis, settings)  # Redis's real clock: the refusal is trusted until the hold expires
    make_product(inv, "A", stock=1)
    inv.reservations.reserve("u1", {"A": 1}, ttl_seconds=1)
    for cache in _cache(inv):
        _learn(inv, cache)
        time.sleep(1.05)
        inv.reservations.reserve("buyer", {"A": 1})  # no sweep, no announcement: the refusal ran out


def test_bad_input_is_refused_before_the_cache_and_a_keyed_retry_replays(real_inv: Inventory,
                                                                         cache: SoldOutCache) -> None:
    inv = real_inv
    make_product(inv, "A", stock=1)
    held = inv.reservations.reserve("u1", {"A": 1}, idempotency_key="k1")
    _learn(inv, cache)
    with pytest.raises(InvalidArgument):
        inv.reservations.reserve("bot", {"A": 0})
    replay = inv.reservations.reserve("u1", {"A": 1}, idempotency_key="k1")  # not a cached sold_out
    assert replay.replayed and replay.id == held.id


class _SilentPubSub:
    """A subscription whose peer vanished without a reset: confirmed once, then nothing, not even PONGs."""

    def __init__(self) -> None:
        self.confirmed = False
        self.pings = 0

    def psubscribe(self, pattern: str) -> None:
        pass

    def ping(self) -> None:
        self.pings += 1

    def get_message(self, timeout: float = 0.0) -> dict | None:
        if not self.confirmed:
            self.confirmed = True
            return {"type": "psubscribe", "pattern": None, "channel": b"p", "data": 1}
        time.sleep(min(timeout, 0.02))
        return None

    def close(self) -> None:
        pass


def test_a_subscription_that_goes_silent_stops_the_cache_answering(monkeypatch: pytest.MonkeyPatch) -> None:
    from inventory import soldout

    monkeypatch.setattr(soldout, "_PING_SECONDS", 0.05)
    monkeypatch.setattr(soldout, "_SILENCE_SECONDS", 0.3)
    silent = _SilentPubSub()
    cache = SoldOutCache(60_000, lambda sku: f"s:{sku}")
    listener = SoldOutListener(cache, lambda: type("Client", (), {"pubsub": lambda self, **_: silent})(), "s:*")
    listener.ensure_started()
    try:
        _wait(lambda: cache.listening)
        _wait(lambda: not cache.listening)  # no error ever came: the silence itself ended the trust
        assert silent.pings >= 3
    finally:
        listener.stop()


def _wait(condition, timeout: float = 5.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.01)


def test_a_key_prefix_with_glob_characters_still_hears_every_return(real_redis, settings, clock) -> None:  # noqa: ANN001
    """'[eu]' in KEY_PREFIX is matched literally by the subscription (it was a character class before)."""
    inv = Inventory(real_redis, settings.with_overrides(key_prefix=f"{settings.key_prefix}[eu]"), clock)
    try:
        for cache in _cache(inv):
            make_product(inv, "A", stock=1)
            held = inv.reservations.reserve("alice", {"A": 1})
            _learn(inv, cache)
            inv.reservations.release(held.id)
            _sold_again(inv, cache)
    finally:
        escaped = inv.keys.stock_pattern.split(":{")[0]
        for key in real_redis.scan_iter(match=f"{escaped}:*", count=1000):
            real_redis.delete(key)


def test_the_api_listener_holds_its_connection_outside_the_request_pool(real_inv: Inventory) -> None:
    """The request pool is sized to gunicorn's worker_connections: a subscription held for good must not
    take one of its connections."""
    from api.state import soldout_listener

    listener = soldout_listener(real_inv)
    assert listener is not None
    client = listener.connect()
    assert client.ping() and all(client.connection_pool is not node.connection_pool
                                 for node in masters(real_inv.redis))
    client.connection_pool.disconnect()


def _bucket_of(inv: Inventory, reservation_id: str) -> str:
    """The stock bucket that serves a reservation on a split SKU (its line that is not a quota line)."""
    token = reservation_id[2:]
    home = inv.reservations.calls.read(inv.keys.of_token(token), token)
    records = [home] + [inv.reservations.calls.read(inv.keys.parts[int(q)], token)
                        for q in home.get("parts", "").split(",") if q]
    return next(f[2:] for r in records for f in r if f.startswith("l:") and "@q" not in f)


def test_a_split_sku_is_forgotten_when_any_of_its_buckets_gets_units_back(real_inv: Inventory) -> None:
    make_product(real_inv, "A", stock=4)
    real_inv.buckets.split("A", 4)
    for cache in _cache(real_inv, real_inv.buckets.stock_keys):
        held = [real_inv.reservations.reserve(f"b{i}", {"A": 1}) for i in range(4)]
        _learn(real_inv, cache)
        elsewhere = next(r for r in held if _bucket_of(real_inv, r.id) != "A")
        real_inv.reservations.release(elsewhere.id)
        _sold_again(real_inv, cache)

