"""What an open single-line reservation would cost in Redis under other key layouts (a design study).

    .venv/bin/python -m bench.memory_layouts [--smoke]

bench/memory.py measures the product's layout through the product; this study writes the same
reservation data with plain commands in candidate layouts, so a layout can be priced before the
scripts are rewritten for it. Each layout stores what an open hold needs today: the hold (token,
quantity, user, expiry), the user's units of the SKU, the reservation record (user, status, expiry,
creation, the line with its price) and the SKU's entry in the expiry index. Measured as in
bench/memory.py, per key (MEMORY USAGE growth of the keys written) and by `INFO memory` used_memory
growth (with the keyspace's tables and the expires table), per reservation, on the run's own redis-server (default encodings: listpacks up to
128 zset / 512 hash entries of at most 64 bytes), in two shapes: 10,000 holds on one SKU ("hot") and
one hold on each of 5,000 stocked SKUs ("spread"), each with 13-character and UUID user ids.
"""

from __future__ import annotations

import platform
import random
import string
import uuid
import zlib
from dataclasses import dataclass
from typing import Callable

import redis

from bench.goals import at_most, verdict
from bench.memory import usage, used_memory
from bench.solo import delete_prefix, main, parser, write_json
from bench.suite import Context

NAME = "memory_layouts"
PREFIX = "fl"  # as long as the product's "fs"
TAG = "{p0.0}"  # one partition's tag, as on a single node
TARGET_B = 300
TTL_MS = 600_000
RETENTION_MS = 86_400_000
NOW_MS = 1_765_000_000_000
HOLD_BUCKETS = 256  # holds zsets per SKU: 10,000 holds stay under 128 per bucket (listpack)
BUYER_BUCKETS = 32  # buyers hashes per SKU: 10,000 buyers stay under 512 per bucket
RECORD_BUCKETS = 1024  # record hashes per partition
INDEX_BUCKETS = 1024  # expiry-index zsets per partition


@dataclass(frozen=True)
class Hold:
    """One open single-line reservation, as every layout receives it."""

    token: str
    user: str
    sku: str
    qty: int
    price: int
    expires: int

    @property
    def created(self) -> int:
        return self.expires - TTL_MS


Writer = Callable[[redis.client.Pipeline, str, Hold], None]


def bucket(text: str, buckets: int) -> int:
    return zlib.crc32(text.encode()) % buckets


def packed_record(hold: Hold, *, with_user: bool) -> str:
    """A record as one hash value: [user|]status|expiry|created|sku:qty:price."""
    line = f"h|{hold.expires}|{hold.created}|{hold.sku}:{hold.qty}:{hold.price}"
    return f"{hold.user}|{line}" if with_user else line


def hold_member(hold: Hold) -> str:
    """A holds-zset member as the product writes it (lua/includes/common.lua hold_member)."""
    return f"{hold.token}|{hold.qty}|{hold.user}"


def sku_holds(pipe: redis.client.Pipeline, base: str, hold: Hold) -> None:
    """Today: one holds zset and one buyers hash per SKU."""
    pipe.zadd(f"{base}:h:{hold.sku}", {hold_member(hold): hold.expires})
    pipe.hincrby(f"{base}:b:{hold.sku}", hold.user, hold.qty)


def bucket_holds(pipe: redis.client.Pipeline, base: str, hold: Hold) -> None:
    """A SKU's holds in zsets chosen by token and its buyers in hashes chosen by user."""
    pipe.zadd(f"{base}:h:{hold.sku}:{bucket(hold.token, HOLD_BUCKETS)}", {hold_member(hold): hold.expires})
    pipe.hincrby(f"{base}:b:{hold.sku}:{bucket(hold.user, BUYER_BUCKETS)}", hold.user, hold.qty)


def stock_hash_holds(pipe: redis.client.Pipeline, base: str, hold: Hold) -> None:
    """A light SKU's holds and buyers as fields of its stock hash."""
    pipe.hset(f"{base}:s:{hold.sku}", f"h:{hold.token}", f"{hold.qty}|{hold.user}|{hold.expires}")
    pipe.hincrby(f"{base}:s:{hold.sku}", f"b:{hold.user}", hold.qty)


def partition_index(pipe: redis.client.Pipeline, base: str, hold: Hold) -> None:
    """Today: the SKU's entry in its partition's one expiry zset."""
    pipe.zadd(f"{base}:x", {f"s:{hold.sku}": hold.expires}, lt=True)


def bucket_index(pipe: redis.client.Pipeline, base: str, hold: Hold) -> None:
    pipe.zadd(f"{base}:x:{bucket(hold.sku, INDEX_BUCKETS)}", {hold.sku: hold.expires}, lt=True)


def record_key(pipe: redis.client.Pipeline, base: str, hold: Hold) -> None:
    """A record hash per reservation, kept until its hold expires plus the retention (the product before 12-05;
    since then only for records that do not pack into 64 bytes)."""
    record = f"{base}:r:{hold.token}"
    pipe.hset(record, mapping={"u": hold.user, "st": "held", "exp": hold.expires, "ct": hold.created, "n": 1,
                               f"l:{hold.sku}": hold.qty, f"p:{hold.sku}": hold.price})
    pipe.pexpire(record, TTL_MS + RETENTION_MS)


def packed(with_user: bool) -> Writer:
    """The record as one field of a per-partition bucket hash chosen by token."""
    def write(pipe: redis.client.Pipeline, base: str, hold: Hold) -> None:
        pipe.hset(f"{base}:r:{bucket(hold.token, RECORD_BUCKETS)}", hold.token,
                  packed_record(hold, with_user=with_user))
    return write


def layout(*parts: Writer) -> Writer:
    """A layout: each of its parts writes its share of one hold."""
    def write(pipe: redis.client.Pipeline, base: str, hold: Hold) -> None:
        for part in parts:
            part(pipe, base, hold)
    return write


record_keys = layout(sku_holds, partition_index, record_key)  # the product before 12-05

# (name, writer for a hot SKU, writer for one hold per SKU): a light SKU keeps its few holds and buyers in
# its stock hash in the last two, which a hot SKU cannot (over 512 fields it becomes a hash table).
LAYOUTS: list[tuple[str, Writer, Writer]] = [
    ("record keys (before 12-05)", record_keys, record_keys),
    ("holds and buyers in buckets", layout(bucket_holds, partition_index, record_key),
     layout(bucket_holds, partition_index, record_key)),
    ("records packed in buckets", layout(sku_holds, partition_index, packed(False)),
     layout(sku_holds, partition_index, packed(False))),
    ("every part in listpacks", layout(bucket_holds, bucket_index, packed(True)),
     layout(stock_hash_holds, bucket_index, packed(True))),
    ("every part in listpacks, user once", layout(bucket_holds, bucket_index, packed(False)),
     layout(stock_hash_holds, bucket_index, packed(False))),
]


def token() -> str:
    return "".join(random.choices(string.digits + string.ascii_lowercase, k=24))


def short_user(i: int) -> str:
    return f"user-{i:08d}"


def uuid_user(_: int) -> str:
    return str(uuid.UUID(int=random.getrandbits(128)))


def stock_hash(sku: str) -> dict[str, object]:
    """A configured, stocked SKU's hash with today's fields (22-character name)."""
    return {"total": 100, "avail": 99, "held": 1, "sold": 0, "limit": 5, "price": 1999, "v": 1,
            "name": f"Product {sku:>14}", "rm": 29_416_666, "rc": 1, "rp": 0, "st": 0}


def key_bytes(client: redis.Redis, prefix: str) -> int:
    """MEMORY USAGE summed over every key under the prefix."""
    return sum(usage(client, list(client.scan_iter(match=f"{prefix}:*", count=5000))).values())


def measure(client: redis.Redis, writer: Writer, shape: str, users: Callable[[int], str], count: int,
            prefix: str = PREFIX) -> tuple[float, float]:
    """Bytes per reservation added in one shape, (per key, by INFO); every key is deleted afterwards."""
    base = f"{prefix}:{TAG}"
    skus = [f"SKU-{i:06d}" for i in range(count)] if shape == "spread" else ["SKU-000123"] * count
    pipe = client.pipeline(transaction=False)
    for sku in dict.fromkeys(skus):
        pipe.hset(f"{base}:s:{sku}", mapping=stock_hash(sku))
    for i in range(200):  # other SKUs with holds: the product's expiry index is a skiplist, as in a sale
        pipe.zadd(f"{base}:x", {f"s:BG-{i:04d}": NOW_MS + i})
    pipe.execute()
    keys_before, before = key_bytes(client, prefix), used_memory(client)
    for i, sku in enumerate(skus):
        writer(pipe, base, Hold(token(), users(i), sku, 1, 1999, NOW_MS + TTL_MS + i))
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    added = used_memory(client) - before
    keys_added = key_bytes(client, prefix) - keys_before
    delete_prefix(client, prefix)
    return keys_added / count, added / count


def run(ctx: Context) -> dict:
    """Scenario entry point (bench/suite.py contract)."""
    client = redis.Redis(host="127.0.0.1", port=ctx.redis_port)
    counts = {"hot": 300 if ctx.smoke else 10_000, "spread": 300 if ctx.smoke else 5_000}
    random.seed(12)
    rows = []
    try:
        for name, hot_writer, spread_writer in LAYOUTS:
            for shape, writer in (("hot", hot_writer), ("spread", spread_writer)):
                for label, users in (("13-char users", short_user), ("UUID users", uuid_user)):
                    per_key, by_info = measure(client, writer, shape, users, counts[shape])
                    rows.append({"layout": name, "shape": shape, "users": label,
                                 "per_key_b": round(per_key, 1), "info_b": round(by_info, 1)})
        version = client.info("server")["redis_version"]
    finally:
        delete_prefix(client, PREFIX)
    result = {"scenario": NAME, "smoke": ctx.smoke, "counts": counts, "rows": rows,
              "targets": {f"{r['layout']} / {r['shape']} / {r['users']}": at_most(r["info_b"], TARGET_B, "B")
                          for r in rows},
              "versions": {"python": platform.python_version(), "redis_server": version},
              "failures": []}  # a study: a layout over the target is a finding, not a failed run
    result["summary"] = [f"{r['layout']:36} {r['shape']:6} {r['users']:13} per key {r['per_key_b']:6.1f} B, "
                         f"INFO {verdict(goal)}"
                         for r, goal in zip(rows, result["targets"].values())]
    write_json(ctx, NAME, result)
    return result


if __name__ == "__main__":
    raise SystemExit(main(NAME, run, parser("python -m bench.memory_layouts", __doc__ or "").parse_args()))
