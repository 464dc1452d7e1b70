"""Stock buckets: one SKU's units split over several partitions, so one hot SKU's reserves spread over shards.

A SKU X split into B buckets (`Buckets.split`):
- bucket 0 is X itself; bucket i >= 1 is the internal SKU 'X@<i>.<k>', k being the first number that puts
  it in partition (p(X) + offset(i)) mod P, the offsets spreading evenly over the partitions, so the first
  buckets land on different shards. No product SKU may contain '@', so internal names never collide. Each
  bucket is an ordinary SKU to the scripts, the outbox, PostgreSQL, reconcile and recovery: the invariant
  holds per bucket, and the product's counters are the sums (`summed`).
- per-user limits: quota SKU j ('X@q<j>.<k>', j < Q = partitions, in bucket j's partition) has practically
  unlimited stock and X's per-user limit. A reservation on X holds one line on a bucket and one on its
  user's quota SKU (j = crc32(user) mod Q), whose buyers hash therefore counts the user's units of X over
  every bucket: the limit is exact whichever bucket served them. Both lines are ordinary reservation lines
  (one script call when they share a partition, a multi-part reservation otherwise), so checkout, payment,
  release, amend and expiry need nothing new.
- X's stock hash carries 'bk' (active buckets: new holds go to 0..bk-1) and 'bkn' (buckets ever created:
  reads sum over all of them; buckets at or above bk are drained by the rebalance). Once split, X only
  takes routed calls (the reserve script refuses the others), also with bk = 1.
- a request goes to an active bucket in its user's quota partition when there is one (one script call),
  else to bucket crc32(user) mod bk; if that bucket cannot serve it, the router reads every bucket's
  available units and tries the fullest, at most MAX_RETRIES more times, before answering sold_out.
- `rebalance` moves units from fuller buckets to emptier ones with lua/transfer_stock (journaled out,
  idempotent in); `resume_moves` finishes moves a crash interrupted.
"""

from __future__ import annotations

import secrets
import time
import zlib
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Iterable, Sequence

from redis.crc import key_slot

from inventory.bucket_waitlist import BucketWaitlist
from inventory.buyers import merge_buyers, queue_buyer_read
from inventory.context import Context, text
from inventory.errors import InvalidArgument, ProductNotFound, StockBelowCommitted
from inventory.models import Line, StockLevel
from inventory.validation import check_sku

MAX_BUCKETS = 64
MAX_SPLIT_SKU = 52  # an internal name ('X@q63.12345') must fit the 64-character SKU columns
QUOTA_STOCK = 10**12 - 1  # "unlimited": the largest total adjust_stock takes
MAX_RETRIES = 2  # extra buckets a refused request tries before sold_out
LAYOUT_TTL_SECONDS = 1.0  # how long a process trusts a SKU's layout (a stale one is refused by the script)
MOVE_RESUME_MS = 5_000  # a journaled move older than this was interrupted: the next rebalance finishes it
_FIELDS = ("total", "avail", "held", "sold")
_LAYOUT_FIELDS = ("bk", "bkn", "bkp", "bq")


def product_of(sku: str) -> str:
    """The product an internal bucket or quota SKU belongs to (a product SKU is its own)."""
    return sku.split("@", 1)[0]


def is_quota(sku: str) -> bool:
    return "@q" in sku


def is_internal(sku: str) -> bool:
    return "@" in sku


def user_hash(user_id: str) -> int:
    return zlib.crc32(user_id.encode())


@lru_cache(maxsize=64)
def _offsets(partitions: int) -> tuple[int, ...]:
    """Every partition offset once, in an order whose every prefix is spread evenly (van der Corput)."""
    bits = max(1, (partitions - 1).bit_length())
    seen: list[int] = []
    for j in range(1 << bits):
        reversed_j = int(f"{j:0{bits}b}"[::-1], 2)
        offset = reversed_j * partitions >> bits
        if offset not in seen:
            seen.append(offset)
    seen += [o for o in range(partitions) if o not in seen]
    return tuple(seen)


def _partition(name: str, partitions: int) -> int:
    return key_slot(name.encode()) % partitions if partitions > 1 else 0


@lru_cache(maxsize=65_536)
def _placed(stem: str, target: int, partitions: int) -> str:
    """'<stem>.<k>' for the first k whose partition is `target`."""
    for k in range(1_000_000):
        name = f"{stem}.{k}"
        if _partition(name, partitions) == target:
            return name
    raise AssertionError(f"no name for {stem} in partition {target}")  # pragma: no cover


def default_position(sku: str, index: int, partitions: int) -> int:
    """The partition of bucket `index` when its placement was not chosen by the split (spread offsets)."""
    return (_partition(sku, partitions) + _offsets(partitions)[index % partitions]) % partitions


def bucket_name(sku: str, index: int, partitions: int, position: int | None = None) -> str:
    """Bucket `index` of a split SKU (0 is the SKU itself), in partition `position`."""
    if index == 0:
        return sku
    if position is None:
        position = default_position(sku, index, partitions)
    return _placed(f"{sku}@{index}", position, partitions)


def quota_name(sku: str, index: int, partitions: int) -> str:
    """Quota SKU `index` of a split SKU, in the partition of bucket `index`."""
    offsets = _offsets(partitions)
    return _placed(f"{sku}@q{index}", (_partition(sku, partitions) + offsets[index]) % partitions, partitions)


@dataclass(frozen=True)
class Layout:
    """How a SKU's stock is split: `active` 0 means not split; `positions[i - 1]` is bucket i's partition."""

    sku: str
    active: int
    created: int
    partitions: int
    positions: tuple[int, ...] = ()
    quota: bool = False  # per-user limits counted in quota SKUs ('bq'): every request carries a quota line

    @classmethod
    def of(cls, sku: str, fields: dict[str, str], partitions: int) -> "Layout":
        """The layout a stock hash records ('bk', 'bkn', 'bkp', 'bq')."""
        positions = tuple(int(p) for p in (fields.get("bkp") or "").split(",") if p)
        return cls(sku, int(fields.get("bk") or 0), int(fields.get("bkn") or 0), partitions, positions,
                   fields.get("bq") == "1")

    @property
    def split(self) -> bool:
        return self.active > 0

    @cached_property
    def buckets(self) -> list[str]:
        """Every bucket ever created, 0 first."""
        return [self.bucket(i) for i in range(max(self.created, 1))]

    @cached_property
    def _active_by_partition(self) -> dict[int, list[int]]:
        by_partition: dict[int, list[int]] = {}
        for i, name in enumerate(self.buckets[:self.active]):
            by_partition.setdefault(_partition(name, self.partitions), []).append(i)
        return by_partition

    def bucket(self, index: int) -> str:
        position = self.positions[index - 1] if 0 < index <= len(self.positions) else None
        return bucket_name(self.sku, index, self.partitions, position)

    @property
    def quota_count(self) -> int:
        return min(self.partitions, MAX_BUCKETS)

    @cached_property
    def quotas(self) -> list[str]:
        return [quota_name(self.sku, j, self.partitions) for j in range(self.quota_count)]

    def quota_for(self, user_id: str) -> str:
        return self.quotas[user_hash(user_id) % self.quota_count]

    def first_bucket(self, user_id: str) -> str:
        """The bucket a user's request tries first: one in the user's quota partition if any is active."""
        h = user_hash(user_id)
        local = self._active_by_partition.get(_partition(self.quota_for(user_id), self.partitions))
        index = local[(h // self.quota_count) % len(local)] if local else h % self.active
        return self.buckets[index]


def layout_fields(sku: str, internal_names: Iterable[str], partitions: int) -> dict[str, Any]:
    """'bk', 'bkn' and 'bkp' of a split SKU from the names of its internal SKUs ({} when it has none):
    every bucket ever created counts as active."""
    names = set(internal_names)
    if not names:
        return {}
    by_index = {}
    for name in names:
        index = name.split("@", 1)[1].split(".", 1)[0]  # 'X@<i>.<k>' is bucket i; 'X@q<j>.<k>' a quota
        if index.isdigit():
            by_index[int(index)] = name
    created = 1
    while created in by_index and created < MAX_BUCKETS:
        created += 1
    positions = ",".join(str(_partition(by_index[i], partitions)) for i in range(1, created))
    quota = any(is_quota(name) for name in names)
    return {"bk": created, "bkn": created, "bkp": positions, **({"bq": 1} if quota else {})}


def bucket_fields(bucket: str, product_names: Iterable[str]) -> dict[str, int]:
    """The layout mark of a bucket SKU being rebuilt: 'bq' when its product counts limits in quotas."""
    return {"bq": 1} if any(is_quota(name) for name in product_names) else {}


def summed(fields: dict[str, str], buckets: Sequence[dict[str, str]]) -> dict[str, str]:
    """A split SKU's stock hash with its counters summed over its buckets (`fields` is bucket 0's)."""
    out = dict(fields)
    for name in _FIELDS:
        out[name] = str(sum(int(b.get(name) or 0) for b in [fields, *buckets]))
    return out


class Buckets:
    """Layouts (cached per process), routing of reserve lines, the split itself and rebalancing."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.keys = ctx.keys
        self._layouts: dict[str, tuple[float, Layout]] = {}
        self.refused_with_stock = 0  # sold_out answers given while some bucket had the units (false sold-outs)
        self.waitlist = BucketWaitlist(self)

    # -- layouts -----------------------------------------------------------------------------------

    def layouts(self, skus: Iterable[str], *, fresh: bool = False) -> dict[str, Layout]:
        """Each SKU's layout, from this process's memory when read less than LAYOUT_TTL_SECONDS ago."""
        now = time.monotonic()
        out: dict[str, Layout] = {}
        missing = []
        for sku in skus:
            cached = None if fresh else self._layouts.get(sku)
            if cached is not None and cached[0] > now:
                out[sku] = cached[1]
            elif not is_internal(sku):
                missing.append(sku)
        if missing:
            pipe = self.ctx.redis.pipeline(transaction=False)
            for sku in missing:
                pipe.hmget(self.keys.sku(sku).stock, *_LAYOUT_FIELDS)
            for sku, values in zip(missing, pipe.execute()):
                fields = {f: text(v) for f, v in zip(_LAYOUT_FIELDS, values) if v is not None}
                layout = Layout.of(sku, fields, self.keys.partitions)
                self._layouts[sku] = (now + LAYOUT_TTL_SECONDS, layout)
                out[sku] = layout
        return out

    def layout(self, sku: str, *, fresh: bool = False) -> Layout:
        return self.layouts([sku], fresh=fresh)[sku]

    def forget(self, sku: str) -> None:
        self._layouts.pop(sku, None)

    def stock_keys(self, sku: str) -> list[str]:
        """Stock keys whose announcements concern this product (every bucket's, once split)."""
        cached = self._layouts.get(sku)
        if cached is None or not cached[1].split:
            return [self.keys.sku(sku).stock]
        return [self.keys.sku(b).stock for b in cached[1].buckets]

    # -- routing -----------------------------------------------------------------------------------

    def route(self, user_id: str, lines: Sequence[tuple[str, int]], layouts: dict[str, Layout],
              chosen: dict[str, list[tuple[str, int]]] | None = None) -> list[tuple[str, int]]:
        """Script lines for product lines: a split SKU's line becomes bucket lines (`chosen`, else the
        user's first bucket for all of it) and, when it counts limits in quotas, a quota line."""
        out: list[tuple[str, int]] = []
        for sku, qty in lines:
            layout = layouts.get(sku)
            if layout is None or not layout.split:
                out.append((sku, qty))
                continue
            out += (chosen or {}).get(sku) or [(layout.first_bucket(user_id), qty)]
            if layout.quota:
                out.append((layout.quota_for(user_id), qty))
        return out

    @staticmethod
    def routes(script_lines: Sequence[tuple[str, int]], layouts: dict[str, Layout]) -> dict[str, str]:
        """How each script line was routed, for the reserve script's layout check (lua/reserve)."""
        out: dict[str, str] = {}
        for sku, _ in script_lines:
            layout = layouts.get(product_of(sku))
            if is_quota(sku):
                out[sku] = "2"
            elif layout is not None and layout.split:
                out[sku] = "2" if layout.quota else "1"
        return out

    def plan(self, layout: Layout, qty: int, tried: set[str]) -> tuple[list[tuple[str, int]] | None, int]:
        """Where to take `qty` units next, from one read of every active bucket: the fullest untried bucket
        that has them all, else the fullest buckets together (the line split over them); None when the
        buckets do not have `qty` units between them. Also returns the units they have between them."""
        names = layout.buckets[:layout.active]
        pipe = self.ctx.redis.pipeline(transaction=False)
        for name in names:
            pipe.hget(self.keys.sku(name).stock, "avail")
        avail = {name: int(v or 0) for name, v in zip(names, pipe.execute())}
        total = sum(avail.values())
        untried = [n for n in names if n not in tried and avail[n] >= qty]
        if untried:
            return [(max(untried, key=lambda n: avail[n]), qty)], total
        if total < qty:
            return None, total
        picks, rest = [], qty
        for name in sorted(names, key=lambda n: -avail[n]):
            if rest <= 0 or avail[name] <= 0:
                break
            picks.append((name, min(avail[name], rest)))
            rest -= picks[-1][1]
        return picks, total

    @staticmethod
    def product_lines(lines: Iterable[Line]) -> tuple[Line, ...]:
        """Lines as the buyer sees them: bucket lines under their product, quota lines left out."""
        merged: dict[str, Line] = {}
        for line in lines:
            if is_quota(line.sku):
                continue
            sku = product_of(line.sku)
            seen = merged.get(sku)
            merged[sku] = Line(sku, line.qty + (seen.qty if seen else 0), line.unit_price)
        return tuple(sorted(merged.values(), key=lambda line: line.sku))

    # -- reads -------------------------------------------------------------------------------------

    def sum_into(self, found: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        """Stock hashes by SKU with every split SKU's counters summed over its buckets (one round trip)."""
        split = [sku for sku, f in found.items() if f.get("bk")]
        if not split:
            return found
        pipe = self.ctx.redis.pipeline(transaction=False)
        names = {sku: Layout.of(sku, found[sku], self.keys.partitions).buckets[1:] for sku in split}
        for sku in split:
            for name in names[sku]:
                pipe.hmget(self.keys.sku(name).stock, *_FIELDS)
        replies = iter(pipe.execute())
        out = dict(found)
        for sku in split:
            buckets = [dict(zip(_FIELDS, (text(v) if v is not None else "0" for v in next(replies))))
                       for _ in names[sku]]
            out[sku] = summed(found[sku], buckets)
        return out

    # -- admin -------------------------------------------------------------------------------------

    def split(self, sku: str, count: int) -> Layout:
        """Split a SKU's stock into `count` buckets, live (1 on a split SKU: routed through one bucket).

        New buckets are configured before the layout names them; a SKU with a per-user limit gets its
        quotas opened exactly (`_open_quotas`), so units held before the split count too. Then the
        units are spread (`rebalance`); retired buckets are emptied into the active ones.
        """
        check_sku(sku)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BUCKETS:
            raise InvalidArgument(f"buckets must be from 1 to {MAX_BUCKETS}.", field="buckets", value=count)
        if len(sku) > MAX_SPLIT_SKU:
            raise InvalidArgument(f"Only SKUs of at most {MAX_SPLIT_SKU} characters can be split into buckets.",
                                  field="sku", value=sku)
        keys = self.keys.sku(sku)
        fields = {text(k): text(v) for k, v in self.ctx.redis.hgetall(keys.stock).items()}
        if not fields:
            raise ProductNotFound("No such product.", sku=sku)
        was_split = bool(fields.get("bk"))
        if not was_split and count == 1:
            return Layout(sku, 0, 0, self.keys.partitions)  # one bucket is what an unsplit SKU already is
        if int(fields.get("wn") or 0) > 0 and not fields.get("wlf"):  # a queue formed before epochs were kept
            self.ctx.redis.hsetnx(keys.stock, "wle", 1)
            self.ctx.redis.hsetnx(keys.stock, "wlf", self.ctx.redis.hget(keys.stock, "wle"))
        old = Layout.of(sku, fields, self.keys.partitions)
        created = max(old.created, 1, count)
        layout = Layout(sku, count, created, self.keys.partitions, self._positions(old, created))
        config = self._config_pairs(fields)
        for name in layout.buckets[max(old.created, 1):]:  # older buckets follow every change already
            self._configure(name, config)
        self.ctx.redis.sadd(self.keys.of_sku(sku).splits, sku)  # from here on the sweeper looks after it
        quota = old.quota or (not was_split and int(fields.get("limit") or 0) > 0)
        if quota and not old.quota:
            self._open_quotas(layout, int(fields["limit"]), self._layout_mapping(count, created, layout))
        else:
            if quota:
                self._mark_quota(layout.buckets)
            self._publish(sku, self._layout_mapping(count, created, layout))
            if quota:
                self.finish_quotas(Layout(sku, count, created, self.keys.partitions, layout.positions, True))
        self.forget(sku)
        self.rebalance(sku)
        return Layout(sku, count, created, self.keys.partitions, layout.positions, quota)

    @staticmethod
    def _layout_mapping(count: int, created: int, layout: Layout) -> dict[str, Any]:
        return {"bk": count, "bkn": created, "bkp": ",".join(map(str, layout.positions))}

    def _open_quotas(self, layout: Layout, limit: int, publish: dict[str, Any]) -> None:
        """Start counting a split SKU's per-user limit in quota SKUs, exactly: the quotas are created
        paused; every other bucket is marked (its script then refuses lines without a quota line), then
        bucket 0 in one write with the layout `publish` names; every buyer's units over all buckets are
        copied in, never lowering one (the buckets' buyers counts cannot grow unquoted any more); then
        the quotas open. A process stopped anywhere in between is finished by the sweeper (`rebalance`)."""
        for name in layout.quotas:
            self._configure(name, ["name", f"{layout.sku} quota", "price", 0, "limit", limit, "paused", "1"])
            self._ensure_total(name)
        self._mark_quota(layout.buckets[1:])
        self._publish(layout.sku, {**publish, "bq": "1"})
        self.finish_quotas(layout)

    def finish_quotas(self, layout: Layout) -> int:
        """Open quotas that a process stopped between marking the buckets and opening them (the SKU would
        refuse every request until then); returns how many. Safe beside an opening still under way: the
        buckets are marked, so their buyers counts cannot grow unquoted, and copies never lower a count."""
        pipe = self.ctx.redis.pipeline(transaction=False)
        for name in layout.quotas:
            pipe.hget(self.keys.sku(name).stock, "paused")
        stuck = [name for name, paused in zip(layout.quotas, pipe.execute()) if paused == b"1"]
        if stuck:
            self._copy_buyers(layout)
            for name in stuck:
                self._configure(name, ["paused", "0"])
        return len(stuck)

    def _mark_quota(self, names: Sequence[str]) -> None:
        pipe = self.ctx.redis.pipeline(transaction=False)
        for name in names:
            pipe.hset(self.keys.sku(name).stock, "bq", "1")
        pipe.execute()

    def _positions(self, old: Layout, created: int) -> tuple[int, ...]:
        """Partitions of buckets 1..created-1: the existing ones stay; each new one goes to an unused
        partition on the master holding the fewest of this SKU's buckets (on one node: spread offsets)."""
        positions = list(old.positions[:max(old.created - 1, 0)])
        positions += [default_position(old.sku, i, old.partitions) for i in range(len(positions) + 1, old.created)]
        partitions = old.partitions
        home = _partition(old.sku, partitions)
        node_of = self._masters_of_partitions()
        for _ in range(len(positions) + 1, created):
            used = [home, *positions]
            free = [(home + o) % partitions for o in _offsets(partitions) if (home + o) % partitions not in used]
            if not free:  # more buckets than partitions: they share
                free = [(home + o) % partitions for o in _offsets(partitions)]
            load = {node_of.get(p): sum(node_of.get(q) == node_of.get(p) for q in used) for p in free}
            positions.append(min(free, key=lambda p: load[node_of.get(p)]))
        return tuple(positions)

    def _masters_of_partitions(self) -> dict[int, str]:
        """Partition -> the master serving its slot (a cluster), {} on one node."""
        node_of = getattr(self.ctx.redis, "get_node_from_key", None) if self.ctx.cluster else None
        if node_of is None:
            return {}
        return {part.index: node_of(part.sale_switch).name for part in self.keys.parts}

    def configure_buckets(self, sku: str, pairs: list[Any]) -> None:
        """Carry a product's new settings to its other buckets (and its limit to its quota SKUs)."""
        layout = self.layout(sku, fresh=True)
        if not layout.split:
            return
        for name in layout.buckets[1:]:
            self._configure(name, pairs)
        limit = dict(zip(pairs[::2], pairs[1::2])).get("limit")
        if limit is not None and layout.quota:
            for name in layout.quotas:
                self._configure(name, ["limit", limit])
        elif limit is not None and int(limit) > 0:
            self._open_quotas(layout, int(limit), {})
            self.forget(sku)

    def _publish(self, sku: str, layout: dict[str, Any]) -> None:
        """Write a SKU's layout fields in one script call that also tells PostgreSQL (the outbox's
        product_configured event carries 'bk'), so a rebuild after a data loss restores this layout."""
        self._configure(sku, [item for pair in layout.items() for item in pair])

    def _config_pairs(self, fields: dict[str, str]) -> list[Any]:
        pairs: list[Any] = []
        for field in ("name", "price", "cur", "limit", "start", "end"):
            if field in fields:
                pairs += [field, fields[field]]
        return pairs + ["paused", "1" if fields.get("paused") == "1" else "0"]

    def _configure(self, name: str, pairs: list[Any]) -> None:
        part = self.keys.of_sku(name)
        self.ctx.run("configure_product", [part.sku(name).stock, part.catalog, part.dirty, part.outbox],
                     [name, "", "", *pairs])

    def _ensure_total(self, name: str) -> None:
        part = self.keys.of_sku(name)
        total = int(self.ctx.redis.hget(part.sku(name).stock, "total") or 0)
        if total < QUOTA_STOCK:
            self.ctx.run("adjust_stock", [part.sku(name).stock, part.dirty, part.outbox],
                         [name, "add", QUOTA_STOCK - total, "", "quota"])

    def _copy_buyers(self, layout: Layout) -> None:
        """Every buyer's units over all buckets into their quota, never lowering one (quotas are paused)."""
        pipe = self.ctx.redis.pipeline(transaction=False)
        for name in layout.buckets:
            queue_buyer_read(pipe, self.keys.sku(name))
        found = pipe.execute()
        buyers: dict[str, int] = {}
        for stock, counted in zip(found[0::2], found[1::2]):
            for user, units in merge_buyers(stock, counted).items():
                buyers[user] = buyers.get(user, 0) + units
        batch = self.ctx.script_batch()
        for user in sorted(buyers):
            quota = self.keys.sku(layout.quota_for(user))
            batch.call("raise_buyer_units", [quota.stock, quota.buyers], [user, buyers[user]])
        for reply in batch.execute():
            if isinstance(reply, Exception):
                raise reply

    def adjust(self, sku: str, mode: str, units: int, expected_version: int | None, reason: str) -> StockLevel:
        """adjust_stock for a split SKU: 'set' and 'add' act on the sum over its buckets; units added go to
        bucket 0 and are spread by the rebalance, units removed come from the fullest buckets."""
        home = self.keys.of_sku(sku)
        stock_keys = [home.sku(sku).stock, home.dirty, home.outbox]
        if expected_version is not None:  # the product's version is bucket 0's: checked with a no-op
            self.ctx.run("adjust_stock", stock_keys, [sku, "add", 0, expected_version, reason])
        level = self.level(sku)
        delta = units - level.total if mode == "set" else units
        if delta < 0 and level.available < -delta:
            raise StockBelowCommitted("Total stock cannot drop below units held and sold.",
                                      committed=level.held + level.sold, requested=level.total + delta)
        if delta > 0:
            self.ctx.run("adjust_stock", stock_keys, [sku, "add", delta, "", reason])
        elif delta < 0:
            self._remove(self.layout(sku, fresh=True), -delta, reason)
        self.rebalance(sku)
        return self.level(sku)

    def _remove(self, layout: Layout, units: int, reason: str) -> None:
        """Take units out of the fullest buckets; a bucket emptied meanwhile by reserves is skipped."""
        names = layout.buckets
        pipe = self.ctx.redis.pipeline(transaction=False)
        for name in names:
            pipe.hget(self.keys.sku(name).stock, "avail")
        avail = {name: int(v or 0) for name, v in zip(names, pipe.execute())}
        for name in sorted(names, key=lambda n: -avail[n]):
            take = min(units, avail[name])
            if take <= 0:
                continue
            part = self.keys.of_sku(name)
            try:
                self.ctx.run("adjust_stock", [part.sku(name).stock, part.dirty, part.outbox],
                             [name, "add", -take, "", reason])
            except StockBelowCommitted:
                continue
            units -= take
        if units > 0:
            raise StockBelowCommitted("Reserves took the units meanwhile; what could be removed was.",
                                      committed=0, requested=units)

    def level(self, sku: str) -> StockLevel:
        """A split SKU's counters summed over its buckets, with bucket 0's version."""
        fields = {text(k): text(v) for k, v in self.ctx.redis.hgetall(self.keys.sku(sku).stock).items()}
        if not fields:
            raise ProductNotFound("No such product.", sku=sku)
        f = self.sum_into({sku: fields})[sku]
        return StockLevel(sku, int(f["total"]), int(f["avail"]), int(f["held"]), int(f["sold"]), int(f.get("ver") or 0))

    # -- rebalancing -------------------------------------------------------------------------------

    def rebalance(self, sku: str) -> int:
        """Even out the available units of a split SKU's active buckets and empty its retired ones;
        returns the units moved. Safe under live reserves: each move takes at most what is available."""
        layout = self.layout(sku, fresh=True)
        if not layout.split:
            return 0
        if layout.quota:
            self.finish_quotas(layout)
        else:  # a limit but no quotas: an opening stopped before bucket 0 was marked (or never began)
            limit = int(self.ctx.redis.hget(self.keys.sku(sku).stock, "limit") or 0)
            if limit > 0:
                self._open_quotas(layout, limit, {})
        if self.waitlist.tend(layout).waiting:  # buyers wait: every unit goes to bucket 0's queue, none is spread
            return 0
        names = layout.buckets
        pipe = self.ctx.redis.pipeline(transaction=False)
        for name in names:
            pipe.hget(self.keys.sku(name).stock, "avail")
        avail = {name: int(v or 0) for name, v in zip(names, pipe.execute())}
        active = names[:layout.active]
        moved = 0
        for retired in names[layout.active:]:  # emptied whole: no request goes there any more
            while avail[retired] > 0:
                dst = min(active, key=lambda n: avail[n])
                units = self.move(retired, dst, avail[retired])
                if not units:
                    break
                avail[retired] -= units
                avail[dst] += units
                moved += units
        even, extra = divmod(sum(avail[n] for n in active), len(active))
        share = {n: even + (i < extra) for i, n in enumerate(active)}
        giving = {n: avail[n] - share[n] for n in active}
        # below three quarters of an even share (or empty while others have units): topped up to the share
        wanting = {n: share[n] - avail[n] for n in active if avail[n] < share[n] - share[n] // 4}
        for dst, need in sorted(wanting.items(), key=lambda kv: -kv[1]):
            for src in sorted(giving, key=lambda n: -giving[n]):
                if need <= 0 or giving[src] <= 0 or src == dst:
                    continue
                units = self.move(src, dst, min(need, giving[src]))
                giving[src] -= units
                need -= units
                moved += units
        return moved

    def move(self, src: str, dst: str, units: int, *, mode: str = "out") -> int:
        """Move up to `units` available units (mode 'owed': units set aside for the waitlist) from bucket
        src to bucket dst; returns the units moved."""
        move_id = secrets.token_hex(8)
        reply = self.transfer(src, mode, move_id, units, dst)
        taken = int(reply[1]) if int(reply[0]) == 0 else 0
        if taken:
            self.transfer(dst, "in", move_id, taken, src)
            self.transfer(src, "done", move_id, 0, "")
        return taken

    def resume_moves(self, older_than_ms: int = MOVE_RESUME_MS) -> int:
        """Finish moves a crash left between 'out' and 'done'; returns how many."""
        now = self.ctx.now_ms()
        finished = 0
        for part in self.keys.parts:
            for move_id, entry in self.ctx.redis.hgetall(part.moves).items():
                dst, units, at = text(entry).rsplit("|", 2)
                if now - int(at) < older_than_ms:
                    continue
                self.transfer(dst, "in", text(move_id), int(units), "")
                self.ctx.redis.hdel(part.moves, move_id)
                finished += 1
        return finished

    def rebalance_all(self) -> int:
        """Resume interrupted moves, then rebalance every split SKU; returns the units moved."""
        self.resume_moves()
        pipe = self.ctx.redis.pipeline(transaction=False)
        for part in self.keys.parts:
            pipe.smembers(part.splits)
        moved = 0
        for found in pipe.execute():
            for sku in sorted(text(s) for s in found):
                moved += self.rebalance(sku)
        return moved

    def transfer(self, sku: str, mode: str, move_id: str, units: int, peer: str) -> list[Any]:
        """One call of lua/transfer_stock on bucket `sku` (a move's half, or a waitlist flag, unflag, reclaim)."""
        part = self.keys.of_sku(sku)
        keys = part.sku(sku)
        return self.ctx.run("transfer_stock", [keys.stock, part.dirty, part.outbox, part.moves,
                                               part.moves_applied, keys.holds, keys.buyers],
                            [sku, mode, move_id, units, peer])
