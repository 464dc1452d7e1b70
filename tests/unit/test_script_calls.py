"""Script calls sent straight onto a pooled connection (inventory/scripts.py): same answers, same safety."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from inventory import Inventory, Settings
from inventory.errors import InventoryError
from inventory.scripts import Scripts
from inventory.store import connect_redis
from tests.helpers import make_product


def _one_connection_inventory(url: str, key_prefix: str, timeout: float) -> Inventory:
    """A core whose pool holds a single connection, so every call reuses the one a previous call used."""
    settings = Settings(redis_url=url, key_prefix=key_prefix, redis_max_connections=1,
                        redis_timeout_seconds=timeout)
    return Inventory(connect_redis(settings), settings)


def test_only_a_plain_pooled_client_sends_directly(redis_server: redis.Redis) -> None:
    assert Scripts(redis_server)._evalsha.__func__ is Scripts._evalsha_on_pooled_connection
    fake = fakeredis.FakeRedis()
    assert Scripts(fake)._evalsha == fake.evalsha
    single = redis.Redis(port=redis_server.connection_pool.connection_kwargs["port"], single_connection_client=True)
    try:
        assert Scripts(single)._evalsha == single.evalsha
    finally:
        single.close()


def test_a_refused_call_leaves_its_connection_clean_for_the_next(key_prefix: str) -> None:
    inv = _one_connection_inventory("redis://127.0.0.1:6379/0", key_prefix, 2.0)
    try:
        make_product(inv, "A", stock=1, price=111)
        make_product(inv, "B", stock=5, price=222)
        inv.reservations.reserve("alice", {"A": 1})
        with pytest.raises(InventoryError, match="stock"):  # a refusal reply on the one connection
            inv.reservations.reserve("bob", {"A": 1})
        with pytest.raises(redis.ResponseError, match="negative"):  # an error reply on the same connection
            inv.ctx.scripts._evalsha("0" * 40, -1)
        with pytest.raises(redis.exceptions.NoScriptError):
            inv.ctx.scripts._evalsha("0" * 40, 0)
        held = inv.reservations.reserve("bob", {"B": 2})
        assert held.lines[0].unit_price == 222 and held.total == 444
    finally:
        for key in inv.redis.scan_iter(match=f"{key_prefix}:*"):
            inv.redis.delete(key)
        inv.redis.close()


def test_a_call_whose_reply_timed_out_never_hands_that_reply_to_the_next_call(own_redis) -> None:
    """The stalled call's reply can only arrive after its timeout: `read_response` closes that connection,
    and the pool reconnects a connection that has unread data, so the next call (same one-connection
    pool, sent as soon as the server runs again) reads its own reply, never the late one."""
    inv = _one_connection_inventory(own_redis.url, "direct", 0.3)
    make_product(inv, "A", stock=5, price=111)
    make_product(inv, "B", stock=5, price=222)
    own_redis.pause()
    try:
        with pytest.raises(redis.TimeoutError):
            inv.reservations.reserve("alice", {"A": 1})
        own_redis.resume()  # the next call goes out at once, racing the late reply
        held = inv.reservations.reserve("bob", {"B": 1})
    finally:
        own_redis.resume()
    assert held.lines[0].sku == "B" and held.lines[0].unit_price == 222
    # Whether the stalled call ran depends on when the server sees the closed socket: a lost reply is
    # a write that may or may not have happened (it is never re-sent, tests/unit/test_store.py).
    assert inv.catalog.get("A").stock.held in (0, 1)
    inv.redis.close()
