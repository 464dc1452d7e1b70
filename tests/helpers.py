"""Small helpers shared by test modules."""

from __future__ import annotations

import signal
import subprocess

from inventory import Inventory
from inventory.holds import read_open_holds
from inventory.keys import HOLDS_IN, HOLDS_OF
from inventory.models import StockLevel
from inventory.records import packed_until, read_record


def make_product(inv: Inventory, sku: str = "HOT", *, stock: int = 10, price: int = 1500,
                 limit: int = 0) -> None:
    inv.catalog.configure(sku, name=f"Product {sku}", price=price, currency="USD", per_user_limit=limit)
    inv.catalog.adjust_stock(sku, set_total=stock, reason="seed")


def record(inv: Inventory, public_id: str) -> dict[str, str]:
    """A reservation's or order's record at its home, wherever it lives (packed or a key of its own)."""
    token = public_id[2:]
    return read_record(inv.redis, inv.keys.of_token(token), token)


def record_ttl(inv: Inventory, public_id: str) -> int:
    """Ms until a record may go, as PTTL gives it (-2: none): a packed record's retention is kept on the
    scripts' clock, a key's by Redis."""
    token = public_id[2:]
    part = inv.keys.of_token(token)
    packed = inv.redis.hget(part.record_bucket(token), token)
    if packed:
        return packed_until(packed) - inv.ctx.now_ms()
    return int(inv.redis.pttl(part.reservation(token)))


def stock(inv: Inventory, sku: str = "HOT") -> StockLevel:
    return inv.catalog.get(sku).stock


def assert_invariant(level: StockLevel) -> None:
    assert level.available + level.held + level.sold == level.total, level
    assert min(level.available, level.held, level.sold, level.total) >= 0, level


def outbox_length(inv: Inventory) -> int:
    """Entries in every partition's outbox stream (one on a single node, 16 on a cluster)."""
    return sum(int(inv.redis.xlen(part.outbox)) for part in inv.keys.parts)


def outbox_pending(inv: Inventory, group: str) -> int:
    """Entries delivered to `group` but not acknowledged, over every partition's outbox."""
    total = 0
    for part in inv.keys.parts:
        if inv.redis.exists(part.outbox):
            try:
                total += int(inv.redis.xpending(part.outbox, group)["pending"])
            except Exception as error:  # noqa: BLE001 - a stream without the group has nothing pending
                if "NOGROUP" not in str(error):
                    raise
    return total


def outbox_entries(inv: Inventory) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Every partition's outbox entries (XRANGE), partition after partition."""
    return [entry for part in inv.keys.parts for entry in inv.redis.xrange(part.outbox)]


def assert_holds_listed(inv: Inventory, skus: list[str]) -> None:
    """Every hold that can expire is listed no later than its expiry: by its SKU ('s:<sku>') in the SKU's
    index bucket with the bucket ('x:<n>') in its partition's expiry index, or, for a pinned part released
    since and holds from before the per-SKU index or the buckets, by its token or SKU in the partition's
    index. Otherwise the sweeper would never give it back (only a later request's lazy expiry)."""
    for sku in skus:
        part = inv.keys.of_sku(sku)
        bucket = part.sku(sku).index
        in_bucket = inv.redis.zscore(bucket, f"{HOLDS_OF}{sku}")
        bucket_listed = inv.redis.zscore(part.expiries, f"{HOLDS_IN}{part.index_number(sku)}")
        by_bucket = None if in_bucket is None or bucket_listed is None else max(in_bucket, bucket_listed)
        for token, qty, user, score in read_open_holds(inv.redis, part.sku(sku)):
            if score == float("inf") or token == "~wl":  # pinned, or the waitlist's pool: never expires
                continue
            listed = [by_bucket, inv.redis.zscore(part.expiries, f"{HOLDS_OF}{sku}"),
                      inv.redis.zscore(part.expiries, token)]
            assert any(at is not None and at <= score for at in listed), (sku, token, qty, user, score, listed)


def table_columns(database_url: str, table: str) -> list[str]:
    """Column names of a table in a SQLite database (migration tests)."""
    from inventory.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return [row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table})")]
    finally:
        engine.dispose()


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM a server the test started and wait for it; SIGKILL it if it has not exited in time."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
