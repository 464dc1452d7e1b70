"""Bounded reads for reconciliation: no single Redis call returns more than one slice.

Redis runs one command (or one MULTI) at a time, so a read of a whole holds zset or of the whole
outbox stalls every other client for as long as it takes (36-52 ms for 40k outbox entries). Here:

  * the outbox is read once per run in XRANGE slices of OUTBOX_SLICE entries, then only its new tail
    (stream ids only grow, so "after the last id seen" is exactly what was added since);
  * a SKU's holds are read in ZRANGE slices of HOLDS_SLICE members, under WATCH of its stock hash and
    holds zset: EXEC succeeds only if neither changed, which makes the sliced read a snapshot;
  * SKUs with few holds are read several at a time in one MULTI, capped at BATCH_HOLDS members;
  * the dirty set and the catalogue are walked with SSCAN / ZRANGE BYLEX slices.

Why the outbox need not be read atomically with a SKU: an event that moves a SKU's counters is
appended by the same script call that writes the SKU's stock hash, and the drain deletes an entry
only after its PostgreSQL transaction committed. So for a SKU read at instant t, with the outbox
tail read after t and PostgreSQL queried after that, every event of that SKU up to t is either in
this view or already committed (and `ledger.settled` counts each ledger ref once). Entries the view
keeps after the drain deleted them are found in PostgreSQL by ref and not counted twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from redis import Redis
from redis.exceptions import WatchError

from inventory.context import decode_hash, text
from inventory.holds import bucket_numbers, light_holds, read_buckets
from inventory.keys import HOLD_BUCKET, SkuKeys
from inventory.outbox import Event, OrderEvent, ProductConfigured, StockAdjusted, StreamId, parse_entries

OUTBOX_SLICE = 500  # entries per XRANGE (~0.5 ms of server time)
HOLDS_SLICE = 1000  # members per ZRANGE
BATCH_HOLDS = 2000  # members per MULTI that reads several small SKUs at once
BATCH_SKUS = 100  # SKUs per such MULTI
SET_SLICE = 1000  # members per SSCAN / ZRANGE BYLEX step
ATTEMPTS = 5


@dataclass(frozen=True)
class SkuRead:
    """One SKU's stock hash and holds as they were at one instant."""

    fields: dict[str, str]
    holds: list[tuple[str, int, str]]  # (token, qty, user)


@dataclass
class OutboxView:
    """The outbox stream as read so far in this run, indexed by SKU; refresh() appends the new tail."""

    redis: Redis
    key: str
    events: list[Event] = field(default_factory=list)
    last: StreamId | None = None
    _by_sku: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))

    def refresh(self) -> int:
        """Read every entry after the last one seen, OUTBOX_SLICE per call; returns how many."""
        read = 0
        while True:
            start = "-" if self.last is None else f"{self.last.ms}-{self.last.seq + 1}"
            entries = self.redis.xrange(self.key, min=start, max="+", count=OUTBOX_SLICE)
            for event in parse_entries(entries):
                self._add(event)
            if entries:
                self.last = StreamId.parse(entries[-1][0])
            read += len(entries)
            if len(entries) < OUTBOX_SLICE:
                return read

    def for_sku(self, sku: str) -> list[Event]:
        """Events of this SKU (stock, product, and orders with a line of it), in stream order."""
        return list(self._by_sku.get(sku, ()))

    def _add(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, (StockAdjusted, ProductConfigured)):
            self._by_sku[event.sku].append(event)
        elif isinstance(event, OrderEvent):
            for sku in {line.sku for line in event.lines}:
                self._by_sku[sku].append(event)


def parse_holds(members: Sequence[Any]) -> list[tuple[str, int, str]]:
    """Holds zset members "<token>|<qty>|<user>" as tuples (hold buckets' 'k:<n>' entries left out)."""
    holds = []
    for member in map(text, members):
        if not member.startswith(HOLD_BUCKET):
            token, qty, user = member.split("|", 2)
            holds.append((token, int(qty), user))
    return holds


def holds_of(fields: dict[str, str], members: Sequence[Any]) -> list[tuple[str, int, str]]:
    """A SKU's holds from its holds zset's members and its stock hash's light holds."""
    return parse_holds(members) + [(token, qty, user) for token, qty, user, _ in light_holds(fields)]


def read_holds(client: Any, keys: SkuKeys, redis: Any) -> list[tuple[str, int, str]]:
    """Every hold of a SKU's zset (ZRANGE slices on `client`) and hold buckets (one pipelined round trip
    on `redis`); a snapshot only if the caller WATCHes the stock hash (every hold taken or given back
    changes it) and the holds zset, and EXEC succeeds, whichever connection read them."""
    holds: list[tuple[str, int, str]] = []
    numbers: list[int] = []
    start = 0
    while True:
        members = client.zrange(keys.holds, start, start + HOLDS_SLICE - 1)
        holds += parse_holds(members)
        numbers += bucket_numbers(members)
        if len(members) < HOLDS_SLICE:
            break
        start += HOLDS_SLICE
    for bucket in read_buckets(redis, keys, numbers):
        holds += [(token, qty, user) for token, qty, user, _ in light_holds(bucket)]
    return holds


def read_watched(redis: Redis, keys: SkuKeys) -> SkuRead | None:
    """One SKU read in slices under WATCH, retried while it changes; None if it never held still."""
    for _ in range(ATTEMPTS):
        with redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(keys.stock, keys.holds)
                fields = decode_hash(pipe.hgetall(keys.stock))
                seen = SkuRead(fields, holds_of(fields, []) + read_holds(pipe, keys, redis))
                pipe.multi()
                pipe.exists(keys.stock)  # EXEC fails if the stock hash or the holds changed since WATCH
                pipe.execute()
                return seen
            except WatchError:
                continue
    return None


def read_skus(redis: Redis, skus: Sequence[str], keys_of: Any) -> dict[str, SkuRead | None]:
    """Each SKU's stock hash and holds at one instant per SKU, no call returning more than a slice.

    SKUs with at most HOLDS_SLICE holds are read in MULTI batches of about BATCH_HOLDS members;
    larger ones, and any that grew since they were counted, under WATCH (None: kept changing).
    """
    pipe = redis.pipeline(transaction=False)
    for sku in skus:
        pipe.zcard(keys_of(sku).holds)
    cards = dict(zip(skus, (int(c) for c in pipe.execute())))
    small = [s for s in skus if cards[s] <= HOLDS_SLICE]
    large = [s for s in skus if cards[s] > HOLDS_SLICE]
    out: dict[str, SkuRead | None] = {}
    # A MULTI batch stays in one slot (a cluster runs a transaction on one slot only): group by hash tag.
    small.sort(key=lambda sku: keys_of(sku).stock.split("}", 1)[0])
    for batch in _batches(small, cards, lambda sku: keys_of(sku).stock.split("}", 1)[0]):
        pipe = redis.pipeline(transaction=True)
        for sku in batch:
            keys = keys_of(sku)
            pipe.hgetall(keys.stock)
            pipe.zrange(keys.holds, 0, cards[sku])  # one more than counted: growth shows, stays bounded
            pipe.zcard(keys.holds)
        replies = pipe.execute()
        for i, sku in enumerate(batch):
            raw, members, card = replies[3 * i:3 * i + 3]
            if int(card) > len(members) or bucket_numbers(members):
                large.append(sku)  # grew since ZCARD, or holds in hold buckets: read it alone
            else:
                fields = decode_hash(_as_hash(raw))
                out[sku] = SkuRead(fields, holds_of(fields, members))
    for sku in large:
        out[sku] = read_watched(redis, keys_of(sku))
    return out


def _as_hash(raw: Any) -> dict[Any, Any]:
    """An HGETALL reply from a MULTI: redis-py's cluster pipeline returns it unconverted (a flat
    [field, value, ...] list under RESP2), a single node's pipeline as a dict."""
    return raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2]))


def _batches(skus: Sequence[str], cards: dict[str, int], tag_of: Any = lambda sku: "") -> Iterator[list[str]]:
    batch: list[str] = []
    members = 0
    for sku in skus:
        if batch and (members + cards[sku] > BATCH_HOLDS or len(batch) >= BATCH_SKUS
                      or tag_of(sku) != tag_of(batch[0])):
            yield batch
            batch, members = [], 0
        batch.append(sku)
        members += cards[sku]
    if batch:
        yield batch


def scan_set(redis: Redis, key: str) -> set[str]:
    """Members of a set by SSCAN (a member present throughout is returned; added meanwhile: maybe)."""
    return {text(m) for m in redis.sscan_iter(key, count=SET_SLICE)}


def lex_members(redis: Redis, key: str) -> list[str]:
    """Members of a score-0 zset in lexicographic order, ZRANGE BYLEX slices from the last one seen."""
    out: list[str] = []
    start = "-"
    while True:
        members = [text(m) for m in redis.zrangebylex(key, start, "+", start=0, num=SET_SLICE)]
        out += members
        if len(members) < SET_SLICE:
            return out
        start = f"({members[-1]}"
