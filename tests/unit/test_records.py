"""Reservation records packed in their partition's record bucket, or in a key of their own (issue 11's memory)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from inventory import Inventory
from inventory.models import Status
from inventory.records import packed_until, record_of, unpack_record
from inventory.scripts import _splice_includes
from inventory.validation import is_user_id
from tests.clocks import ManualClock
from tests.helpers import make_product, record, record_ttl, stock

_PACK = _splice_includes('''--@include "clock"
--@include "common"
local f = {}
for i = 1, #ARGV, 2 do f[ARGV[i]] = ARGV[i + 1] end
f['~until'] = tonumber(f['~until'])
local packed = pack_record(f)
if not packed then return false end
local back, flat = unpack_record(packed), {}
for name, value in pairs(back) do
  flat[#flat + 1] = name
  flat[#flat + 1] = as_text(value)
end
return {packed, flat}
''')


def homes(inv: Inventory, public_id: str) -> tuple[bool, bool]:
    """(packed in its bucket, a key of its own)."""
    token = public_id[2:]
    part = inv.keys.of_token(token)
    return bool(inv.redis.hexists(part.record_bucket(token), token)), bool(inv.redis.exists(part.reservation(token)))


def test_an_open_single_line_hold_is_packed_and_reads_as_a_key_would(inv: Inventory) -> None:
    make_product(inv, "A", stock=10, price=1999)
    held = inv.reservations.reserve("alice-0000001", {"A": 2}, ttl_seconds=60)
    assert homes(inv, held.id) == (True, False)
    fields = record(inv, held.id)
    assert fields == {"u": "alice-0000001", "st": "held", "exp": fields["exp"], "ct": fields["ct"], "n": "1",
                      "l:A": "2", "p:A": "1999"}
    assert int(fields["exp"]) - int(fields["ct"]) == 60_000
    assert inv.reservations.get(held.id).lines[0].qty == 2
    assert 60_000 + inv.settings.record_retention_seconds * 1000 - 50 < record_ttl(inv, held.id)


@pytest.mark.parametrize("user, packed", [
    ("u" + "1" * 12, True),
    ("a8098c1a-f86e-11da-bd1a-00112444be1e", True),  # lower-case UUID: 16 bytes
    ("A8098C1A-F86E-11DA-BD1A-00112444BE1E", False),  # kept exactly as sent, so too long to pack
    ("x" * 60, False),
])
def test_which_records_are_packed(inv: Inventory, user: str, packed: bool) -> None:
    make_product(inv, "SKU-000123", stock=10)
    held = inv.reservations.reserve(user, {"SKU-000123": 1}, ttl_seconds=60)
    assert homes(inv, held.id) == (packed, not packed)
    assert record(inv, held.id)["u"] == user
    assert inv.reservations.get(held.id, user_id=user).user_id == user


def test_a_packed_record_moves_to_its_own_key_when_it_stops_fitting(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "A", stock=10)
    make_product(inv, "B", stock=10)
    grown = inv.reservations.reserve("alice", {"A": 1}, ttl_seconds=60)
    inv.reservations.amend(grown.id, {"A": 3})  # still one line: still packed
    assert homes(inv, grown.id) == (True, False) and record(inv, grown.id)["l:A"] == "3"
    kept = record_ttl(inv, grown.id)
    inv.reservations.amend(grown.id, {"A": 3, "B": 1})  # two lines: a key, with the same retention
    assert homes(inv, grown.id) == (False, True)
    assert abs(record_ttl(inv, grown.id) - kept) < 2_000
    extended = inv.reservations.reserve("bob", {"A": 1}, ttl_seconds=60)
    inv.reservations.extend(extended.id, seconds=120, extension_id="x1")
    assert homes(inv, extended.id) == (False, True) and record(inv, extended.id)["ext"] == "1"
    ordered = inv.reservations.reserve("carol", {"A": 1}, ttl_seconds=60)
    order = inv.reservations.checkout(ordered.id)
    assert homes(inv, ordered.id) == (False, True)
    assert inv.reservations.get_order(order.id).status is Status.PENDING_PAYMENT
    released = inv.reservations.reserve("dave", {"A": 1}, ttl_seconds=60)
    inv.reservations.release(released.id)
    assert homes(inv, released.id) == (False, True) and record(inv, released.id)["st"] == "released"
    lapsed = inv.reservations.reserve("erin", {"A": 1}, ttl_seconds=60)
    clock.advance(61)
    assert inv.reservations.get(lapsed.id).status is Status.EXPIRED  # read as expired while still packed
    assert homes(inv, lapsed.id) == (True, False)
    assert stock(inv, "A").held == 3 + 1 + 1  # grown, extended, erin's until a sweep or a request takes it


def test_the_pruner_drops_packed_records_after_their_retention_only(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "A", stock=10)
    lapsed = inv.reservations.reserve("alice", {"A": 1}, ttl_seconds=60)
    released = inv.reservations.reserve("bob", {"A": 1}, ttl_seconds=60)
    inv.reservations.release(released.id)  # a key of its own: its TTL, not the pruner, ends it
    every = inv.records.every
    clock.advance(61)
    assert inv.records.prune(every) == 0 and inv.reservations.get(lapsed.id).status is Status.EXPIRED
    clock.advance(inv.settings.record_retention_seconds)
    assert inv.records.prune(every) == 1
    assert homes(inv, lapsed.id) == (False, False) and record(inv, released.id)["st"] == "released"
    assert inv.records.prune(every) == 0


def test_the_sweeps_of_one_round_prune_every_bucket_once(inv: Inventory, clock: ManualClock) -> None:
    interval_ms = int(inv.settings.expire_interval_seconds * 1000)
    seen: list[str] = []
    for _ in range(60_000 // interval_ms):
        seen += inv.records.due_slice()
        clock.advance(interval_ms / 1000)
    assert sorted(seen) == sorted(inv.records.every)


def test_a_sweep_prunes_its_slice(inv: Inventory, clock: ManualClock) -> None:
    make_product(inv, "A", stock=100)
    for i in range(40):
        inv.reservations.reserve(f"user{i}", {"A": 1}, ttl_seconds=60)
    clock.advance(61 + inv.settings.record_retention_seconds)
    pruned = 0
    for _ in range(60_000 // int(inv.settings.expire_interval_seconds * 1000)):
        pruned += inv.sweep().records_pruned
        clock.advance(inv.settings.expire_interval_seconds)
    assert pruned == 40 and stock(inv, "A").held == 0


users = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@:+=-]{0,40}", fullmatch=True).filter(is_user_id) | st.uuids().map(str)
skus = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)
numbers = st.integers(min_value=0, max_value=10**13)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=users, sku=skus, qty=st.integers(1, 1_000_000), price=st.integers(0, 10**9), ct=numbers,
       ttl=st.integers(0, 10**8), keep=st.integers(0, 10**9), fp=st.none() | st.text("0123456789abcdef", min_size=32,
                                                                                       max_size=32))
def test_lua_packs_what_python_and_lua_read_back(any_redis: Any, user: str, sku: str, qty: int, price: int, ct: int,
                                                 ttl: int, keep: int, fp: str | None) -> None:
    fields = {"u": user, "st": "held", "exp": str(ct + ttl), "ct": str(ct), "n": "1", f"l:{sku}": str(qty),
              f"p:{sku}": str(price)} | ({"fp": fp} if fp else {})
    args = [x for kv in (fields | {"~until": str(ct + ttl + keep)}).items() for x in kv]
    reply = any_redis.eval(_PACK, 0, *args)
    if not reply:
        assert len(user) + len(sku) > 20  # only long ids do not fit
        return
    packed, flat = reply
    assert len(packed) <= 64
    expected = fields | ({"fp": fp[:16]} if fp else {})
    lua_read = {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
    assert lua_read == expected | {"~until": str(ct + ttl + keep)}
    assert unpack_record(packed) == expected == record_of(packed, {})
    assert packed_until(packed) == ct + ttl + keep
