"""bench/memory_layouts.py: the records it packs, and its per-key figures on a real redis-server."""

from __future__ import annotations

import pytest

from bench.memory_layouts import (LAYOUTS, NOW_MS, TTL_MS, Hold, measure, packed_record, short_user, record_keys,
                                  uuid_user)
from inventory import ids
from inventory.holds import read_open_holds
from tests.helpers import make_product, record

pytestmark = pytest.mark.redis_server


def test_a_packed_record_fits_a_listpack_value_only_without_a_uuid_user():
    hold = Hold("a" * 24, uuid_user(0), "SKU-000123", 1, 1999, NOW_MS + TTL_MS)
    assert len(packed_record(hold, with_user=False)) <= 64  # hash-max-listpack-value
    assert len(packed_record(hold, with_user=True)) > 64  # the whole record hash would become a hash table
    assert packed_record(hold, with_user=False) == f"h|{hold.expires}|{NOW_MS}|SKU-000123:1:1999"


def test_every_layout_is_measured_and_leaves_no_key(redis_server, key_prefix):
    figures = {}
    for name, hot_writer, spread_writer in LAYOUTS:
        figures[name, "hot"] = measure(redis_server, hot_writer, "hot", short_user, 1500, key_prefix)
        figures[name, "spread"] = measure(redis_server, spread_writer, "spread", short_user, 300, key_prefix)
        assert not list(redis_server.scan_iter(match=f"{key_prefix}:*"))
    per_key = {k: v[0] for k, v in figures.items()}
    # 1,500 holds on one SKU: today's holds zset is a skiplist and its buyers hash a hash table, each
    # entry over 100 B; in buckets they stay listpacks of a few dozen bytes per entry
    assert per_key["holds and buyers in buckets", "hot"] < per_key["record keys (before 12-05)", "hot"] - 60
    assert per_key["every part in listpacks", "hot"] < per_key["holds and buyers in buckets", "hot"] - 60
    assert per_key["every part in listpacks, user once", "spread"] < per_key["record keys (before 12-05)", "spread"] - 150
    assert all(v > 0 for v in per_key.values())


def test_record_keys_write_the_fields_the_product_keeps_for_one_hold(real_inv, redis_server, key_prefix):
    make_product(real_inv, "SKU-1", stock=5, price=500)
    held = real_inv.reservations.reserve("user-00000001", {"SKU-1": 2})
    token = ids.token_of(held.id, "r")
    product_record = {k.encode(): v.encode() for k, v in record(real_inv, held.id).items()}  # its fields, packed or not
    product_member = [f"{t}|{q}|{u}".encode() for t, q, u, _ in read_open_holds(real_inv.redis, real_inv.keys.sku("SKU-1"))]
    base = f"{key_prefix}:study:{{p0.0}}"
    pipe = redis_server.pipeline(transaction=False)
    record_keys(pipe, base, Hold(token, "user-00000001", "SKU-1", 2, 500, int(product_record[b"exp"])))
    pipe.execute()
    try:
        assert set(redis_server.hgetall(f"{base}:r:{token}")) == set(product_record)
        assert redis_server.zrange(f"{base}:h:SKU-1", 0, -1) == product_member
    finally:
        redis_server.delete(f"{base}:h:SKU-1", f"{base}:b:SKU-1", f"{base}:r:{token}", f"{base}:x")
