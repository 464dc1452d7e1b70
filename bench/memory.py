"""Redis memory per SKU and per open single-line reservation, against the issue-6 targets.

    .venv/bin/python -m bench.memory [--smoke]

Targets: MEMORY USAGE summed over a SKU's keys <= 1 KiB; over one open single-line reservation's
keys <= 300 B. Products are configured and stocked through the core (Catalog's script calls,
pipelined as the importer does), reservations taken through `Inventory.reservations.reserve`, and
KeySpace names every key. Two methods:
  1. per key: `MEMORY USAGE key SAMPLES 0` of the keys a SKU or reservation owns, plus its share
     of shared structures (catalogue zset, expiry zset, the SKU's holds zset and buyers hash, the
     partition's record buckets, where an open single-line hold's record is packed) as the
     structure's growth divided by the entries added;
  2. `INFO memory` used_memory growth divided by the SKUs or reservations added (this also counts
     the keyspace's own hash tables and the expires table, amortised).
Transient entries (outbox stream, dirty set) are cleared first, as persistence and reconciliation do.
Reservations are measured in three layouts: one per SKU over many SKUs ("spread"), all on one hot
SKU with UUID user ids ("hot") and the same with 13-character user ids ("hot-short-ids").
"""

from __future__ import annotations

import platform
import time
import uuid
from dataclasses import dataclass
from statistics import mean
from typing import Sequence

import redis
from redis import RedisCluster

from bench.cluster import start_cluster
from bench.goals import at_most, verdict
from bench.solo import delete_prefix, main, parser, write_json
from bench.suite import Context
from inventory import Inventory, Settings, ids
from inventory.context import decode_hash, text
from inventory.errors import raise_for_reply
from inventory.holds import read_open_holds
from inventory.scripts import load_sources
from inventory.records import read_record
from inventory.store import connect_redis

NAME = "memory"
PREFIX = "fm"  # as long as the product's default "fs", so key names are as long as in production
SKU_TARGET_B = 1024
RESERVATION_TARGET_B = 300
LONG_NAME = 120  # over hash-max-listpack-value (64): the stock hash becomes a real hash table


@dataclass(frozen=True)
class Sizes:
    """How many SKUs and reservations each measurement adds."""

    skus: int
    long_name_skus: int
    reservations: int  # per layout


def sizes(smoke: bool) -> Sizes:
    """Smoke: a second or two; full: ~10k of each, where per-entry figures are stable to a byte."""
    return Sizes(300, 50, 300) if smoke else Sizes(10_000, 500, 10_000)


# -- pure logic (tested in tests/bench) -------------------------------------------------------------


def per_entry(before: dict[str, int], after: dict[str, int], entries: int) -> float:
    """Growth of a set of keys (missing = 0 bytes) per entry added."""
    return sum(after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)) / entries


def field_bytes(key: str, fields: dict[str, str]) -> dict[str, int]:
    """Raw bytes of a hash's key name and of each field (name + value), largest first."""
    sizes_ = {f"field {name}": len(name.encode()) + len(value.encode()) for name, value in fields.items()}
    return {"key name": len(key.encode()), **dict(sorted(sizes_.items(), key=lambda kv: -kv[1]))}


def dominant(parts: dict[str, float]) -> list[str]:
    """Parts as 'name: bytes (share)', largest first."""
    total = sum(parts.values()) or 1.0
    return [f"{k}: {v:.0f} B ({v / total:.0%})" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])]


# -- Redis helpers --------------------------------------------------------------------------------


def usage(client: "redis.Redis | RedisCluster", keys: Sequence[str]) -> dict[str, int]:
    """MEMORY USAGE key SAMPLES 0 of each key (0 when missing), pipelined (per node on a cluster)."""
    if isinstance(client, RedisCluster):
        by_node: dict[str, list[str]] = {}
        for key in keys:
            by_node.setdefault(client.get_node_from_key(key).name, []).append(key)
        out_c: dict[str, int] = {}
        for name, node_keys in by_node.items():
            host, _, port = name.rpartition(":")
            with redis.Redis(host=host, port=int(port)) as node:
                out_c.update(usage(node, node_keys))
        return out_c
    out: dict[str, int] = {}
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=0)
        out.update({k: int(v or 0) for k, v in zip(chunk, pipe.execute())})
    return out


def used_memory(client: "redis.Redis | RedisCluster", wait_s: float = 10.0) -> int:
    """INFO memory used_memory once it holds still.

    On a shared server another scenario's mass UNLINK frees in the background and the keyspace's
    hash tables shrink and rehash in serverCron, so wait for no pending lazy free and two equal
    readings 100 ms apart. Read on a fresh connection: a big pipeline's query buffer lingers on the old one.
    """
    if isinstance(client, RedisCluster):  # the sum over the masters, each read the same way
        total = 0
        for node in client.get_primaries():
            with redis.Redis(host=node.host, port=node.port) as one:
                total += used_memory(one, wait_s)
        return total
    client.connection_pool.disconnect()
    deadline = time.monotonic() + wait_s
    last = -1
    while True:
        info = client.info("memory")
        used = int(info["used_memory"])
        if (used == last and not int(info.get("lazyfree_pending_objects", 0))) or time.monotonic() > deadline:
            return used
        last = used
        time.sleep(0.1)


def keyspace_tables(client: "redis.Redis | RedisCluster") -> int:
    """Bytes of the keyspace's own hash tables (MEMORY STATS, db 0 main and expires), summed over the
    masters: a table doubles when a node's key count passes a power of two, which INFO counts against
    whatever measurement is running then."""
    if isinstance(client, RedisCluster):
        total = 0
        for node in client.get_primaries():
            with redis.Redis(host=node.host, port=node.port) as one:
                total += keyspace_tables(one)
        return total
    db = client.memory_stats().get("db.0", {})
    return int(db.get("overhead.hashtable.main", 0)) + int(db.get("overhead.hashtable.expires", 0))


def settle(inv: Inventory) -> None:
    """Empty every partition's outbox and dirty set, as a persistence drain and a reconciliation would."""
    for part in inv.keys.parts:
        if inv.redis.exists(part.outbox):
            inv.redis.xtrim(part.outbox, maxlen=0, approximate=False)
        inv.redis.delete(part.dirty)


def configure(inv: Inventory, skus: Sequence[str], names: Sequence[str], stock: int) -> None:
    """Create and stock products through the core's own script calls, pipelined (the importer's route)."""
    calls = inv.catalog
    if inv.ctx.cluster:  # redis-py runs no scripts in cluster pipelines: one call each
        for sku, name in zip(skus, names):
            pairs = calls.configure_pairs(sku, name=name, price=1999, currency="USD", per_user_limit=2)
            raise_for_reply(inv.ctx.scripts.call("configure_product", *calls.configure_call(sku, pairs, None)))
            raise_for_reply(inv.ctx.scripts.call("adjust_stock", *calls.adjust_call(sku, "set", stock, None, "seed")))
        return
    for start in range(0, len(skus), 500):
        pipe = inv.redis.pipeline(transaction=False)
        for sku, name in zip(skus[start:start + 500], names[start:start + 500]):
            pairs = calls.configure_pairs(sku, name=name, price=1999, currency="USD", per_user_limit=2)
            inv.ctx.scripts.call("configure_product", *calls.configure_call(sku, pairs, None), client=pipe)
            inv.ctx.scripts.call("adjust_stock", *calls.adjust_call(sku, "set", stock, None, "seed"), client=pipe)
        for reply in pipe.execute():
            raise_for_reply(reply)


# -- measurements ---------------------------------------------------------------------------------


def measure_skus(inv: Inventory, label: str, skus: list[str], names: list[str]) -> dict:
    """Bytes per configured, stocked SKU, by both methods."""
    client, keys = inv.redis, inv.keys
    settle(inv)
    catalogs, dirties = [p.catalog for p in keys.parts], [p.dirty for p in keys.parts]
    catalog0, mem0 = usage(client, catalogs), used_memory(client)
    configure(inv, skus, names, stock=1000)
    dirty = usage(client, dirties)
    settle(inv)
    mem1, catalog1 = used_memory(client), usage(client, catalogs)
    stock = usage(client, [keys.sku(s).stock for s in skus])
    n = len(skus)
    parts = {"stock hash (own key)": mean(stock.values()), "catalogue zset entry": per_entry(catalog0, catalog1, n)}
    sample = keys.sku(skus[0]).stock
    return {
        "label": label, "skus": n, "name_chars": len(names[0]),
        "per_key_b": round(sum(parts.values()), 1), "info_b": round((mem1 - mem0) / n, 1), "parts_b": parts,
        "stock_hash_max_b": max(stock.values()), "encoding": text(client.object("encoding", sample)),
        "transient_dirty_entry_b": round(sum(dirty.values()) / n, 1),
        "sample_fields": field_bytes(sample, decode_hash(client.hgetall(sample))),
    }


def warm_up(inv: Inventory, skus: Sequence[str]) -> dict:
    """One reserve + release per SKU, so its stock hash has its activity fields before we measure.

    Returns the size of a closed (released) reservation record, kept for record_retention_seconds;
    the warm-up records are then deleted so they do not count in the reservation figures. Each SKU's
    entry in the expiry index (listed until the sweeper next looks at it) is then swept away, as the
    sweeper does once no hold is left, so the first hold of a SKU pays for a new entry as in production.
    """
    tokens = []
    for i, sku in enumerate(skus):
        reservation = inv.reservations.reserve(f"warmup-{i}", {sku: 1})
        inv.reservations.release(reservation.id)
        tokens.append(ids.token_of(reservation.id, "r") or "")
    for sku in skus:
        inv.reservations.calls.sweep_holds(inv.keys.of_sku(sku), sku, 1000)
    records = [inv.keys.reservation(t) for t in tokens]
    closed = usage(inv.redis, records)
    ttl = inv.redis.ttl(records[0])
    for start in range(0, len(records), 1000):  # one key per DEL: records sit in many slots on a cluster
        pipe = inv.redis.pipeline(transaction=False)
        for record in records[start:start + 1000]:
            pipe.delete(record)
        pipe.execute()
    settle(inv)
    return {"closed_record_b": round(mean(closed.values()), 1), "closed_record_ttl_s": ttl}


def measure_reservations(inv: Inventory, layout: str, skus: list[str], users: list[str]) -> tuple[dict, list[str]]:
    """Bytes per open single-line reservation (skus[i] for users[i]), by both methods; and failures."""
    client, keys = inv.redis, inv.keys
    distinct = sorted(set(skus))
    shared = {
        "record bucket entry": [bucket for p in keys.parts for bucket in p.all_record_buckets()],
        "expiry index entry": [p.expiries for p in keys.parts] + [b for p in keys.parts for b in p.all_index_buckets()],
        "holds zset entry": [keys.sku(s).holds for s in distinct],
        "hold bucket entry": [b for s in distinct for b in keys.sku(s).all_hold_buckets()],
        "buyers hash field": [keys.sku(s).buyers for s in distinct],
        "stock hash change": [keys.sku(s).stock for s in distinct],
    }
    flat = [k for group in shared.values() for k in group]
    held0 = sum(int(client.hget(keys.sku(s).stock, "held") or 0) for s in distinct)
    settle(inv)
    tables0 = keyspace_tables(client)  # first: its connection is gone before used_memory is read
    before, mem0 = usage(client, flat), used_memory(client)
    tokens = [ids.token_of(inv.reservations.reserve(user, {sku: 1}).id, "r") or "" for user, sku in zip(users, skus)]
    settle(inv)
    mem1, after, tables1 = used_memory(client), usage(client, flat), keyspace_tables(client)
    records = usage(client, [keys.reservation(t) for t in tokens])  # 0 for a record packed in its bucket
    n = len(tokens)
    parts = {"record hash (own key)": sum(records.values()) / n}
    parts |= {name: per_entry({k: before[k] for k in group}, {k: after[k] for k in group}, n)
              for name, group in shared.items()}
    sample_part = keys.of_token(tokens[0])
    packed = sum(1 for t in tokens if not records[keys.reservation(t)])
    held1 = sum(int(client.hget(keys.sku(s).stock, "held") or 0) for s in distinct)
    failures = [] if held1 - held0 == n else [f"memory/{layout}: held grew by {held1 - held0}, expected {n}"]
    return {
        "layout": layout, "reservations": n, "skus": len(distinct), "user_id_chars": len(users[0]),
        "per_key_b": round(sum(parts.values()), 1), "info_b": round((mem1 - mem0) / n, 1),
        "keyspace_tables_b": round((tables1 - tables0) / n, 1),  # within info_b: a table doubling, if any
        "parts_b": {k: round(v, 1) for k, v in parts.items()},
        "packed_records": packed,
        "encodings": {"record": text(client.object("encoding", sample_part.record_bucket(tokens[0])
                                                   if packed else sample_part.reservation(tokens[0]))),
                      "holds": encoding(client, keys.sku(distinct[0]).holds),
                      "hold bucket": encoding(client, keys.sku(skus[-1]).bucket_of(tokens[-1])),
                      "buyers": encoding(client, keys.sku(distinct[0]).buyers),
                      "stock": encoding(client, keys.sku(distinct[0]).stock),
                      "expiries": text(client.object("encoding", keys.of_sku(distinct[0]).expiries)),
                      "index bucket": text(client.object("encoding", keys.sku(distinct[0]).index))},
        "sample_record_fields": field_bytes(sample_part.reservation(tokens[0]),
                                            read_record(client, sample_part, tokens[0])),
        "sample_hold_chars": len("|".join(map(str, read_open_holds(client, keys.sku(distinct[0]))[0][:3]))),
    }, failures


def encoding(client: "redis.Redis | RedisCluster", key: str) -> str:
    """OBJECT ENCODING of a key, 'absent' when there is none (a light SKU keeps its holds and buyers in
    its stock hash)."""
    found = client.object("encoding", key)
    return text(found) if found is not None else "absent"


def background(inv: Inventory, skus: int = 200, holds: int = 300) -> None:
    """Other products and open holds, so one-off allocations (first keys, script runs, the expiry
    zset turning into a skiplist as it does in production) happen before anything is measured."""
    names = [f"BKG-{i:06d}" for i in range(skus)]
    configure(inv, names, names, stock=holds)
    for i in range(holds):
        inv.reservations.reserve(f"bkg{i:010d}", {names[0]: 1})
    settle(inv)


def active_row(inv: Inventory, configured: dict, skus: list[str]) -> dict:
    """The per-key SKU figure again once each stock hash carries its per-minute activity counters."""
    active = mean(usage(inv.redis, [inv.keys.sku(s).stock for s in skus]).values())
    parts = {**configured["parts_b"], "stock hash (own key)": active}
    sample = inv.keys.sku(skus[0]).stock
    return {**configured, "label": "typical, after sale activity (per-minute counters)", "info_b": None,
            "per_key_b": round(sum(parts.values()), 1), "parts_b": parts,
            "sample_fields": field_bytes(sample, decode_hash(inv.redis.hgetall(sample)))}


# -- scenario -------------------------------------------------------------------------------------


def measure(inv: Inventory, size: Sizes) -> dict:
    """Every SKU and reservation figure on one deployment (a single node or a cluster), with its verdicts."""
    client = inv.redis
    for source in load_sources().values():  # the script cache must not grow inside a measurement
        client.script_load(source.source)
    skus = [f"SKU-{i:06d}" for i in range(size.skus)]
    long_skus = [f"LNG-{i:06d}" for i in range(size.long_name_skus)]
    hot, hot_short = "HOT-000001", "HOT-000002"
    failures: list[str] = []
    background(inv)
    sku_rows = [
        measure_skus(inv, "typical (22-char name)", skus, [f"Flash sale item {i:06d}" for i in range(size.skus)]),
        measure_skus(inv, f"long name ({LONG_NAME} chars)", long_skus,
                     [f"Long product name {i:06d} ".ljust(LONG_NAME, "x") for i in range(size.long_name_skus)]),
    ]
    n, half = size.reservations, size.skus // 2
    configure(inv, [hot, hot_short], ["Hot item", "Hot item 2"], stock=n * 2)
    closed = warm_up(inv, [*skus, hot, hot_short])
    sku_rows.append(active_row(inv, sku_rows[0], skus))
    short_ids = [f"u{i:012d}" for i in range(max(n, half))]
    layouts = [("spread", skus[:half], [str(uuid.uuid4()) for _ in range(half)]),
               ("spread-short-ids", skus[half:2 * half], short_ids[:half]),
               ("hot", [hot] * n, [str(uuid.uuid4()) for _ in range(n)]),
               ("hot-short-ids", [hot_short] * n, short_ids[:n])]
    res_rows = []
    for layout, layout_skus, users in layouts:
        row, bad = measure_reservations(inv, layout, layout_skus, users)
        res_rows.append(row)
        failures += bad
    targets = {
        f"sku[{r['label']}] {method}": at_most(r[key], SKU_TARGET_B, "B")
        for r in sku_rows for method, key in (("per-key", "per_key_b"), ("INFO", "info_b")) if r[key] is not None
    } | {
        f"reservation[{r['layout']}] {method}": at_most(r[key], RESERVATION_TARGET_B, "B")
        for r in res_rows for method, key in (("per-key", "per_key_b"), ("INFO", "info_b"))
    }
    return {"partitions": inv.keys.partitions, "per_sku": sku_rows, "per_reservation": res_rows,
            "closed_reservation": closed, "targets": targets, "failures": failures}


def run(ctx: Context) -> dict:
    """Scenario entry point (bench/suite.py contract): the run's single node, then (unless
    --no-cluster) a private 3-master cluster with the product's cluster client (16 partitions)."""
    size = sizes(ctx.smoke)
    client = redis.Redis(host="127.0.0.1", port=ctx.redis_port)
    try:
        single = measure(Inventory(client, Settings(key_prefix=PREFIX)), size)
        version = client.info("server")["redis_version"]
    finally:
        delete_prefix(client, PREFIX)
    cluster_doc = None
    if getattr(ctx.args, "cluster", True):
        cluster = start_cluster(ctx.tmp)
        try:
            settings = Settings(key_prefix=PREFIX, redis_url=cluster.url)
            cluster_doc = measure(Inventory(connect_redis(settings), settings), size)
            cluster_doc["masters"] = len(cluster.masters())
        finally:
            cluster.stop()
    result = {
        "scenario": NAME, "smoke": ctx.smoke, "sizes": size.__dict__, "key_prefix": PREFIX,
        "versions": {"python": platform.python_version(), "redis_py": redis.__version__, "redis_server": version},
        **single, "cluster": cluster_doc,
        "failures": single["failures"] + [f"cluster: {f}" for f in (cluster_doc or {}).get("failures", [])],
    }
    result["summary"] = summary(result)
    write_json(ctx, NAME, result)
    return result


def summary(result: dict) -> list[str]:
    """Console lines: each figure against its target, and what dominates; single node, then cluster."""
    lines = []
    for name, doc in (("single node", result), ("cluster", result.get("cluster"))):
        if not doc:
            continue
        lines.append(f"== {name}, {doc['partitions']} partition(s)")
        for r in doc["per_sku"]:
            info = "n/a" if r["info_b"] is None else f"{r['info_b']} B"
            lines.append(f"per SKU, {r['label']}: per-key {r['per_key_b']} B, INFO {info}; "
                         + "; ".join(dominant(r["parts_b"])))
        for r in doc["per_reservation"]:
            lines.append(f"per reservation, {r['layout']}: per-key {r['per_key_b']} B, INFO {r['info_b']} B "
                         f"(keyspace hash tables {r.get('keyspace_tables_b', 0)} B of it); "
                         + "; ".join(dominant(r["parts_b"])))
        lines.append(f"closed (released) record kept {doc['closed_reservation']['closed_record_ttl_s']} s: "
                     f"{doc['closed_reservation']['closed_record_b']} B")
        lines += [f"target {t}: {verdict(goal)}" for t, goal in doc["targets"].items()]
    return lines


if __name__ == "__main__":
    p = parser("python -m bench.memory", __doc__ or "")
    p.add_argument("--no-cluster", dest="cluster", action="store_false", help="skip the cluster measurement")
    raise SystemExit(main(NAME, run, p.parse_args()))
