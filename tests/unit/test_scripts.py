"""Script hygiene: headers, cluster slots, no key names built in Lua, survival of SCRIPT FLUSH."""

from __future__ import annotations

import re
from collections import defaultdict

import fakeredis
import pytest
from redis.crc import key_slot

from inventory import Inventory, Settings
from tests.clocks import ManualClock
from inventory.sale_admin import set_global_pause
from inventory.scripts import Scripts, load_sources
from tests.helpers import make_product, stock

SCRIPT_NAMES = {"reserve", "amend", "release", "checkout", "record_payment", "configure_product", "adjust_stock",
                "set_sale_switch"}


def test_every_operation_has_one_script_with_a_full_header() -> None:
    sources = load_sources()
    assert set(sources) == SCRIPT_NAMES
    for src in sources.values():
        header = src.source.split("]]", 1)[0]
        assert header.startswith("--[["), src.filename
        assert re.search(r"KEYS\[1\]", header) and re.search(r"ARGV\[1\]", header), src.filename
        assert "Returns" in header and "Invariant" in header, src.filename
        assert re.match(r"^[a-z_]+-[0-9+nm]+\.lua$", src.filename), src.filename
        assert not re.search(r"^--@include", src.source, re.M), "includes are spliced by the loader"


def test_scripts_never_build_key_names() -> None:
    for src in load_sources().values():
        body = src.source.split("]]", 1)[1]
        assert "{sku:" not in body and "{res:" not in body and ":outbox" not in body, src.filename


def test_each_skus_keys_share_one_cluster_slot_in_every_script_call(
    inv: Inventory, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, list[str]]] = []
    original = Scripts.call

    def recording(self, name, keys, args, client=None):  # noqa: ANN001
        calls.append((name, list(keys)))
        return original(self, name, keys, args, client)

    monkeypatch.setattr(Scripts, "call", recording)
    make_product(inv, "A", stock=10)
    make_product(inv, "B", stock=10)
    held = inv.reservations.reserve("alice", {"A": 1, "B": 2})
    inv.reservations.amend(held.id, {"A": 2}, user_id="alice")
    order = inv.reservations.checkout(held.id)
    inv.reservations.record_payment(event_id="e", result="paid", order_id=order.id)
    other = inv.reservations.reserve("bob", {"A": 1})
    inv.reservations.release(other.id)
    inv.reservations.reserve("carol", {"B": 1}, ttl_seconds=1)
    clock.advance(2)
    inv.reservations.expire_due()
    set_global_pause(inv, True)

    assert {name for name, _ in calls} == SCRIPT_NAMES
    for name, keys in calls:
        slots_by_tag: dict[str, set[int]] = defaultdict(set)
        for key in keys:
            tag = re.search(r"\{([^}]*)\}", key)
            slots_by_tag[tag.group(1) if tag else key].add(key_slot(key.encode()))
        for tag, slots in slots_by_tag.items():
            assert len(slots) == 1, (name, tag)
        for sku in ("A", "B"):
            sku_keys = [k for k in keys if f"{{sku:{sku}}}" in k]
            assert len({key_slot(k.encode()) for k in sku_keys}) <= 1, (name, sku_keys)


@pytest.fixture(params=["fakeredis", "own redis-server"])
def flushable_inv(request: pytest.FixtureRequest, settings: Settings, clock: ManualClock) -> Inventory:
    """SCRIPT FLUSH empties a whole server's script cache: never on the shared server."""
    if request.param == "fakeredis":
        return Inventory(fakeredis.FakeRedis(server=fakeredis.FakeServer()), settings, clock)
    return Inventory(request.getfixturevalue("own_redis").client, settings, clock)


def test_script_flush_between_calls_changes_nothing(flushable_inv: Inventory) -> None:
    inv = flushable_inv
    make_product(inv, stock=5)
    inv.reservations.reserve("alice", {"HOT": 1})
    inv.redis.script_flush()
    held = inv.reservations.reserve("bob", {"HOT": 2})
    inv.redis.script_flush()
    inv.reservations.checkout(held.id)
    level = stock(inv)
    assert (level.available, level.held, level.sold) == (2, 1, 2)
