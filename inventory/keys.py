"""The only place that builds Redis key names.

The key space is split into a fixed number of partitions. Every key of one partition carries the
partition's hash tag, so on Redis Cluster all of them live in one slot: a SKU's stock, holds and
buyers, the reservations on that SKU, and the partition's expiry index, dirty set, outbox stream,
catalogue, sale switch and recovery marker. One script call therefore touches one slot. The tags are
chosen so that partition i hashes into the i-th equal share of the 16384 slots, which spreads the
partitions evenly over the masters of a cluster created with `redis-cli --cluster create`.
A SKU's partition is CRC16(sku) mod partitions; a reservation token ends in its partition's number,
so the server finds its record without a lookup: in the record bucket the token picks (CRC32 mod the
partition's share of RECORD_BUCKETS) when it is packed, else in a key of its own. Likewise a SKU's entry
in the expiry index lives in the index bucket its name picks (CRC32 mod the partition's share of
EXPIRY_BUCKETS), and the partition's index lists the buckets; and a busy SKU's hold for a reservation
lives in the hold bucket its token picks (CRC32 mod HOLD_BUCKETS), listed in the SKU's holds zset.
"""

from __future__ import annotations

import re
import zlib

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

MAX_PARTITIONS = 4096
PARTITION_DIGITS = 3  # hex digits of the partition number at the end of a token
HOLDS_OF = "s:"  # index-bucket member prefix naming a SKU with open holds (lua/includes/common.lua)
HOLDS_IN = "x:"  # expiry-index member prefix naming an index bucket by number (lua/includes/common.lua)
RECORD_BUCKETS = 1024  # record buckets over all partitions (at least one each): ~500k packed holds stay in listpacks
EXPIRY_BUCKETS = 256  # index buckets over all partitions (at least one each): ~32k SKUs with holds stay in listpacks
HOLD_BUCKETS = 256  # hold buckets per busy SKU: ~25k open holds on one SKU stay in listpacks (128 each)
HOLD_BUCKET = "k:"  # holds-zset member prefix naming a hold bucket by number (lua/includes/common.lua)


@lru_cache(maxsize=None)
def partition_tag(index: int, partitions: int) -> str:
    """'{p<index>.<n>}': the first such tag whose slot falls in partition `index`'s share of the slots."""
    low = index * REDIS_CLUSTER_HASH_SLOTS // partitions
    high = (index + 1) * REDIS_CLUSTER_HASH_SLOTS // partitions
    for attempt in range(1_000_000):
        tag = f"p{index}.{attempt}"
        if low <= key_slot(tag.encode()) < high:
            return "{" + tag + "}"
    raise AssertionError(f"no tag found for partition {index} of {partitions}")  # pragma: no cover


@dataclass(frozen=True)
class SkuKeys:
    """The keys of one SKU, in its partition's slot."""

    stock: str
    holds: str
    buyers: str
    waitlist: str = ""  # zset user -> join sequence: buyers waiting for the sold-out SKU, first come first
    waitinfo: str = ""  # hash 'u:<user>' -> the entry (waiting or offered), plus the queue's counters
    index: str = ""  # zset 's:<sku>' -> earliest hold expiry: the expiry-index bucket this SKU is listed in
    hold_buckets: str = ""  # prefix of the hold buckets: hash 'h:<token>' -> hold, for a busy SKU's holds

    def hold_bucket(self, number: int) -> str:
        """Hold bucket `number` (0..HOLD_BUCKETS-1) of this SKU."""
        return f"{self.hold_buckets}{number}"

    def bucket_of(self, token: str) -> str:
        """The hold bucket a reservation token's holds on this SKU go to (CRC32 of the token)."""
        return self.hold_bucket(zlib.crc32(token.encode()) % HOLD_BUCKETS)

    def all_hold_buckets(self) -> list[str]:
        """Every hold bucket of this SKU (most are absent)."""
        return [self.hold_bucket(n) for n in range(HOLD_BUCKETS)]

    def as_list(self, token: str) -> list[str]:
        """Keys in the order scripts expect per line: stock, holds, buyers, the token's hold bucket."""
        return [self.stock, self.holds, self.buyers, self.bucket_of(token)]

    def as_indexed_list(self, token: str) -> list[str]:
        """Keys in the order scripts that add holds expect per line: as_list, then the index bucket."""
        return [self.stock, self.holds, self.buyers, self.bucket_of(token), self.index]


@lru_cache(maxsize=4096)  # asked for several times per request
def _slot_of(sku: str) -> int:
    return key_slot(sku.encode())


@lru_cache(maxsize=4096)  # a sale's hot SKUs are asked for on every request: built once each
def _sku_keys(base: str, sku: str, index_buckets: int) -> SkuKeys:
    return SkuKeys(stock=f"{base}:s:{sku}", holds=f"{base}:h:{sku}", buyers=f"{base}:b:{sku}",
                   waitlist=f"{base}:w:{sku}", waitinfo=f"{base}:wi:{sku}",
                   index=_index_bucket(base, _index_number(sku, index_buckets)), hold_buckets=f"{base}:hb:{sku}:")


def _index_number(sku: str, index_buckets: int) -> int:
    return zlib.crc32(sku.encode()) % index_buckets


def _index_bucket(base: str, number: int) -> str:
    return f"{base}:xb:{number}"


@dataclass(frozen=True)
class Partition:
    """The keys of one partition; all share one hash tag, hence one cluster slot."""

    prefix: str
    index: int
    tag: str
    record_buckets: int = 1
    index_buckets: int = 1

    @cached_property
    def base(self) -> str:
        return f"{self.prefix}:{self.tag}"

    def sku(self, sku: str) -> SkuKeys:
        """Keys of one SKU of this partition: stock hash, holds zset, buyers hash, index bucket."""
        return _sku_keys(self.base, sku, self.index_buckets)

    def reservation(self, token: str) -> str:
        """Hash holding one reservation and, once checked out, its order, unless it is packed in its
        record bucket."""
        return f"{self.base}:r:{token}"

    def record_bucket(self, token: str) -> str:
        """Hash token -> packed record, for the open single-line holds whose record fits in 64 bytes
        (lua/includes/common.lua open_record; inventory/records.py reads both homes)."""
        return f"{self.base}:rb:{zlib.crc32(token.encode()) % self.record_buckets}"

    def all_record_buckets(self) -> list[str]:
        """Every record bucket of this partition (the pruner walks them)."""
        return [f"{self.base}:rb:{i}" for i in range(self.record_buckets)]

    def reservation_match(self) -> str:
        """SCAN pattern matching every reservation record of this partition (admin repair paths only)."""
        return f"{_glob_escape(self.base)}:r:*"

    def user_orders(self, user_id: str) -> str:
        """Zset of a user's order ids in this partition by creation time."""
        return f"{self.base}:o:{user_id}"

    @cached_property
    def expiries(self) -> str:
        """Zset of what comes due in this partition: 'x:<n>' at the earliest entry of index bucket n, and
        tokens at a pending order's payment deadline or a pinned part's window (ms); 's:<sku>' entries
        written before the index buckets are swept as before."""
        return f"{self.base}:expiries"

    def index_number(self, sku: str) -> int:
        """The number of the index bucket listing this SKU (its member there: 'x:<number>')."""
        return _index_number(sku, self.index_buckets)

    def index_bucket(self, number: int) -> str:
        """Index bucket `number` of this partition (zset 's:<sku>' -> the SKU's earliest hold expiry)."""
        return _index_bucket(self.base, number)

    def all_index_buckets(self) -> list[str]:
        """Every index bucket of this partition."""
        return [_index_bucket(self.base, i) for i in range(self.index_buckets)]

    @property
    def pending(self) -> str:
        """Zset of multi-part reservations (by token) whose other parts still have to follow their home."""
        return f"{self.base}:pending"

    @cached_property
    def dirty(self) -> str:
        """Set of this partition's SKUs changed since the last reconciliation."""
        return f"{self.base}:dirty"

    @property
    def outbox(self) -> str:
        """Stream of this partition's events (orders, payments, stock changes) waiting to be persisted."""
        return f"{self.base}:outbox"

    @property
    def splits(self) -> str:
        """Set of this partition's SKUs split into stock buckets (inventory/buckets.py; the sweeper rebalances them)."""
        return f"{self.base}:splits"

    @property
    def moves(self) -> str:
        """Hash of unit moves taken out of this partition's stock buckets and not yet confirmed put in."""
        return f"{self.base}:moves"

    @property
    def moves_applied(self) -> str:
        """Zset of move ids put into this partition's stock buckets (a replayed move is a no-op), by ms."""
        return f"{self.base}:moved"

    @property
    def waitlists(self) -> str:
        """Set of this partition's SKUs with a waitlist (the sweeper makes their offers and expiries)."""
        return f"{self.base}:waitlists"

    @cached_property
    def sale_switch(self) -> str:
        """This partition's copy of the global sale switch ('1' = every sale paused)."""
        return f"{self.base}:sale"

    @property
    def catalog(self) -> str:
        """Zset of this partition's SKUs (score 0, lexicographic order)."""
        return f"{self.base}:catalog"

    @property
    def epoch(self) -> str:
        """Marker written when this partition is seeded or rebuilt; missing means its master lost data."""
        return f"{self.base}:epoch"

    @property
    def test_clock(self) -> str:
        """Virtual time of a test's clock (tests/clocks.py), in this partition's slot but outside
        '<prefix>:*', so a test that simulates data loss by deleting '<prefix>:*' keeps its clock, as
        Redis keeps TIME."""
        return f"{self.prefix}.testclock{self.tag}"


@dataclass(frozen=True)
class KeySpace:
    """Key names under one prefix, so several deployments or test runs share a server safely."""

    prefix: str = "fs"
    partitions: int = 1
    parts: tuple[Partition, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ValueError(f"partitions must be in 1..{MAX_PARTITIONS}")
        records, index = max(1, RECORD_BUCKETS // self.partitions), max(1, EXPIRY_BUCKETS // self.partitions)
        parts = tuple(Partition(self.prefix, i, partition_tag(i, self.partitions), records, index)
                      for i in range(self.partitions))
        object.__setattr__(self, "parts", parts)

    def partition_of(self, sku: str) -> int:
        """The partition a SKU lives in: CRC16 of its name (Redis's own hash) mod partitions."""
        return _slot_of(sku) % self.partitions if self.partitions > 1 else 0

    def of_sku(self, sku: str) -> Partition:
        """The partition holding a SKU's keys."""
        return self.parts[self.partition_of(sku)]

    def of_token(self, token: str) -> Partition:
        """The partition a reservation token names in its last digits; a token naming none (forged, or
        from another partition count) maps to partition 0, where its record is simply not found."""
        try:
            index = int(token[-PARTITION_DIGITS:], 16)
        except ValueError:
            return self.parts[0]
        return self.parts[index] if index < self.partitions else self.parts[0]

    def token_in(self, base: str, index: int) -> str:
        """A reservation token: `base` followed by its partition number."""
        return f"{base}{index:0{PARTITION_DIGITS}x}"

    def sku(self, sku: str) -> SkuKeys:
        """Keys of one SKU: stock hash, holds zset, buyers hash."""
        return self.of_sku(sku).sku(sku)

    def reservation(self, token: str) -> str:
        """Hash holding one reservation and, once checked out, its order."""
        return self.of_token(token).reservation(token)

    @property
    def stock_pattern(self) -> str:
        """PSUBSCRIBE pattern matching every stock key: scripts announce returned units on them."""
        return f"{_glob_escape(self.prefix)}:{{*}}:s:*"

    @property
    def test_clocks(self) -> list[str]:
        """Every partition's test clock key (tests/clocks.py)."""
        return [part.test_clock for part in self.parts]

    def scoped(self, name: str) -> str:
        """A key owned by an adapter (rate limits, idempotency records, locks) under this prefix;
        used alone by one-key commands and scripts, so any slot will do."""
        return f"{self.prefix}:{name}"


def _glob_escape(text: str) -> str:
    """Text matched literally in a Redis glob pattern (a prefix such as 'shop[eu]' is not a class)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
