"""Redis recovery: notice a Redis that came back empty or from an old snapshot, and rebuild it from Postgres.

Each partition of the key space has an epoch marker (`Partition.epoch`), written when its state is
initialised or rebuilt, and Postgres records per partition the epoch it follows plus the highest id
it persisted from that partition's outbox. Then, per partition:
  * marker missing while Postgres has data      -> Redis lost its data (restart without AOF, flush);
  * marker differs from the one Postgres follows -> a different or replaced Redis;
  * the stream's last generated id is behind what Postgres persisted -> Redis rolled back to a snapshot.
In each case the SKUs are paused ('recovering': reservations refused), their counters are rebuilt from
the ledger plus the outbox entries Redis still has, open orders get their records back, and they resume.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from redis.exceptions import RedisError, ResponseError, WatchError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from inventory.buckets import bucket_fields, is_internal, is_quota, layout_fields, product_of
from inventory.buyers import HEAVY, LIGHT_PREFIX, MODE_FIELD
from inventory.context import text
from inventory.engine import Inventory
from inventory.errors import Unavailable
from inventory.holds import BUCKETED_FIELD, bucketed_offset, carried_units
from inventory.keys import Partition
from inventory.ledger import LedgerBusy, all_skus, buyer_units, has_data
from inventory.outbox import ZERO_ID, StreamId
from inventory.persistence import persisted_sale_switch, sync_state_id
from inventory.reconcile import announce_counts, catalog_fields, observe, queue_counts
from inventory.sale_admin import set_global_pause
from inventory.store import MEMORY_URL, masters
from inventory.tables import OrderLineRow, OrderRow, PaymentEventRow, ProductRow, SyncStateRow

log = logging.getLogger(__name__)

_ATTEMPTS = 20
# Short, and renewed per SKU while rebuilding: a check cut off by a Redis stall (its release failing
# too) blocks the next one for at most this long, well inside the 30 s in which recovery must resume.
_LOCK_SECONDS = 20
BEFORE_LOADING_WAIT_SECONDS = 10.0  # how long a call waits for another process's recovery check


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did: SKUs rebuilt from Postgres, SKUs left paused, order records restored."""

    skus: tuple[str, ...]
    rebuilt: tuple[str, ...]
    failed: tuple[str, ...]
    orders_restored: int
    epoch: str


@dataclass(frozen=True)
class RecoveryCheck:
    """Outcome of a recovery check: ok | initialized | adopted | rebuilt | busy, and why."""

    state: str
    reason: str
    epoch: str
    rebuild: RebuildReport | None = None


def new_epoch() -> str:
    return secrets.token_hex(8)


def stream_last_id(inv: Inventory, part: Partition) -> StreamId:
    """A partition's outbox stream's last generated id (0-0 when the stream does not exist)."""
    return stream_position(inv, part)[0]


def stream_position(inv: Inventory, part: Partition) -> tuple[StreamId, StreamId]:
    """(last generated id, largest deleted id) of a partition's outbox (0-0 for what it does not have)."""
    try:
        info = inv.redis.xinfo_stream(part.outbox)
    except ResponseError:
        return ZERO_ID, ZERO_ID
    deleted = info.get("max-deleted-entry-id")
    return StreamId.parse(info["last-generated-id"]), StreamId.parse(deleted) if deleted else ZERO_ID


def rolled_back(inv: Inventory, part: Partition, persisted: StreamId) -> bool:
    """Whether the outbox lost entries PostgreSQL already persisted: Redis came back from an older state.

    The last generated id alone is not enough: the first write after a restore gets a new id (Redis's
    time) past everything persisted. But a persisted entry is always either deleted after its commit
    (so the stream's largest deleted id reaches it) or still in the stream (the delete was lost); after
    a restore from before that commit it is neither.
    """
    last, deleted = stream_position(inv, part)
    if last < persisted:
        return True
    if persisted == ZERO_ID or deleted >= persisted:
        return False
    key = f"{persisted.ms}-{persisted.seq}"
    return not inv.redis.xrange(part.outbox, min=key, max=key, count=1)


def redis_lost_data(inv: Inventory) -> bool:
    """True when some partition's epoch marker is missing: its Redis came back empty or was flushed."""
    pipe = inv.redis.pipeline(transaction=False)
    for part in inv.keys.parts:
        pipe.exists(part.epoch)
    return not all(pipe.execute())


def check_recovery(inv: Inventory, session_factory: sessionmaker[Session]) -> RecoveryCheck:
    """Detect lost or rolled-back Redis state, per partition, and rebuild it; cheap when all is well.

    Each partition has its own marker and outbox position, so a cluster master that came back empty
    or from an old snapshot has only its own partitions rebuilt; the others keep selling.
    """
    lock = inv.redis.lock(inv.keys.scoped("lock:recovery"), timeout=_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return RecoveryCheck("busy", "another process is checking", "")
    try:
        with inv.ctx.scripts.checking():  # its scripts load as usual: it is the check they would wait for
            checks = [_check(inv, session_factory, part, lock.reacquire) for part in inv.keys.parts]
    finally:
        try:
            lock.release()
        except RedisError:  # lost or unreachable: it expires by itself; keep the original error, if any
            pass
    return _combine(checks)


def check_before_loading(inv: Inventory, session_factory: sessionmaker[Session], *,
                         wait_seconds: float = BEFORE_LOADING_WAIT_SECONDS) -> None:
    """The recovery check a process runs when Redis lost its scripts (restart, failover, SCRIPT FLUSH),
    before it loads them again (inventory/scripts.py): a server back from an older snapshot is paused
    and rebuilt before any sale. Another process's check under way is waited for, then this one's
    runs (quick when all is well); Unavailable (503, retry) if none could run within `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            check = check_recovery(inv, session_factory)
        except SQLAlchemyError as error:  # no system of record to compare with: no sale until there is
            log.warning("redis lost its scripts and the database is unreachable: %s", error)
            raise Unavailable("Redis came back and its state cannot be checked yet; try again shortly.") from None
        if check.state != "busy":
            if check.state != "ok":
                log.warning("redis lost its scripts: recovery check %s (%s)", check.state, check.reason)
            return
        if time.monotonic() >= deadline:
            raise Unavailable("Redis came back and its state is being checked; try again shortly.")
        time.sleep(0.05)


def _combine(checks: list[RecoveryCheck]) -> RecoveryCheck:
    """One answer for every partition: the most serious state, with the reasons of those that needed work."""
    if len(checks) == 1:
        return checks[0]
    for state in ("rebuilt", "initialized", "adopted"):
        hit = [c for c in checks if c.state == state]
        if hit:
            reports = [c.rebuild for c in hit if c.rebuild is not None]
            rebuild = None
            if reports:
                rebuild = RebuildReport(
                    tuple(s for r in reports for s in r.skus), tuple(s for r in reports for s in r.rebuilt),
                    tuple(s for r in reports for s in r.failed), sum(r.orders_restored for r in reports),
                    hit[0].epoch)
            return RecoveryCheck(state, "; ".join(c.reason for c in hit), hit[0].epoch, rebuild)
    return RecoveryCheck("ok", "", checks[0].epoch)


def _check(inv: Inventory, session_factory: sessionmaker[Session], part: Partition,
           keep_alive: Callable[[], Any]) -> RecoveryCheck:
    # Postgres first, Redis second: a drain committing between the two reads can only move the
    # persisted position up to where the stream already was. Read the other way round, that drain
    # makes a healthy stream look behind what was persisted ("rolled back") and triggers a rebuild.
    with session_factory() as session:
        state = session.get(SyncStateRow, sync_state_id(part.index))
        known = has_data(session)
    marker = inv.redis.get(part.epoch)
    epoch = text(marker) if marker is not None else None
    last = stream_last_id(inv, part)
    if epoch is None and not known:
        epoch = _init_epoch(inv, session_factory, part, last)
        return RecoveryCheck("initialized", f"partition {part.index}: fresh Redis and empty database", epoch)
    if epoch is not None and state is None:
        _follow(session_factory, part, epoch, last, inv.ctx.now_ms())
        return RecoveryCheck("adopted", f"partition {part.index}: database had no epoch yet", epoch)
    if epoch is None:
        reason = "epoch marker missing: Redis lost its data"
    elif state is not None and state.epoch != epoch:
        reason = f"epoch {epoch} is not the {state.epoch} Postgres follows"
    elif state is not None and rolled_back(inv, part, StreamId(state.last_ms, state.last_seq)):
        reason = f"outbox at {last} lost {state.last_ms}-{state.last_seq}, already persisted: Redis rolled back"
    else:
        return RecoveryCheck("ok", "", epoch or "")
    reason = f"partition {part.index}: {reason}"
    log.error("recovery needed: %s; rebuilding it from Postgres", reason)
    report = rebuild_from_postgres(inv, session_factory, partitions=[part.index], keep_alive=keep_alive)
    return RecoveryCheck("rebuilt", reason, report.epoch, report)


def _init_epoch(inv: Inventory, session_factory: sessionmaker[Session], part: Partition, last: StreamId) -> str:
    inv.redis.set(part.epoch, new_epoch(), nx=True)
    epoch = text(inv.redis.get(part.epoch))
    _follow(session_factory, part, epoch, last, inv.ctx.now_ms())
    return epoch


def _follow(session_factory: sessionmaker[Session], part: Partition, epoch: str, last: StreamId,
            now_ms: int) -> None:
    """Make Postgres follow this epoch of a partition from this stream position on."""
    row_id = sync_state_id(part.index)
    with session_factory.begin() as session:
        row = session.get(SyncStateRow, row_id, with_for_update=True)
        if row is None:
            session.add(SyncStateRow(id=row_id, epoch=epoch, last_ms=last.ms, last_seq=last.seq, updated_ms=now_ms))
        else:
            row.epoch, row.last_ms, row.last_seq, row.updated_ms = epoch, last.ms, last.seq, now_ms


def rebuild_from_postgres(inv: Inventory, session_factory: sessionmaker[Session],
                          skus: Sequence[str] | None = None, *, partitions: Sequence[int] | None = None,
                          keep_alive: Callable[[], Any] | None = None) -> RebuildReport:
    """Pause SKUs, rebuild their counters (and buyers, open order records) from Postgres + outbox, resume.

    With skus=None every SKU Postgres knows in the given partitions (default: all) is rebuilt, their
    copies of the global switch are restored and each starts a new epoch. keep_alive is called before
    each SKU (the recovery check renews its lock with it; raising there stops the rebuild).
    """
    whole = skus is None
    chosen = [inv.keys.parts[i] for i in (partitions if partitions is not None else range(inv.keys.partitions))]
    indexes = {part.index for part in chosen}
    with session_factory() as session:
        everything = set(skus) if skus is not None else all_skus(session)
        switch = persisted_sale_switch(session)
    targets = sorted(sku for sku in everything if not whole or inv.keys.partition_of(sku) in indexes)
    for sku in targets:
        inv.catalog.set_recovering(sku, True)
    if whole:  # these partitions are rebuilt whole: the global switch comes back as last persisted
        restore_sale_switch(inv, switch, chosen)
    rebuilt, failed, configured = [], [], {}
    for sku in targets:
        if keep_alive is not None:
            keep_alive()
        paused = _rebuild_sku(inv, session_factory, sku)
        if paused is None:
            failed.append(sku)
        else:
            rebuilt.append(sku)
            configured[sku] = paused
    restored = restore_order_records(inv, session_factory, rebuilt)
    for sku in rebuilt:
        inv.catalog.set_recovering(sku, False, paused=configured[sku] == "1")
    epoch = ""
    if whole:
        for part in chosen:
            epoch = new_epoch()
            inv.redis.set(part.epoch, epoch)
            _follow(session_factory, part, epoch, stream_last_id(inv, part), inv.ctx.now_ms())
    for sku in failed:
        log.error("rebuild sku=%s left paused: held + sold exceed the persisted total", sku)
    log.warning("rebuilt %d SKUs from Postgres (%d failed), %d order records restored, epoch=%s",
                len(rebuilt), len(failed), restored, epoch or "(unchanged)")
    return RebuildReport(tuple(targets), tuple(rebuilt), tuple(failed), restored, epoch)


def restore_sale_switch(inv: Inventory, paused: bool, parts: Sequence[Partition]) -> None:
    """Set these partitions' copies of the global switch as PostgreSQL last recorded it."""
    if len(parts) == inv.keys.partitions:
        set_global_pause(inv, paused)
        return
    for part in parts:  # the others already have it; the durable record is already in PostgreSQL
        inv.ctx.run("set_sale_switch", [part.sale_switch, part.outbox], ["1" if paused else "0", ""])


def _rebuild_sku(inv: Inventory, session_factory: sessionmaker[Session], sku: str) -> str | None:
    """Counters and buyers of one SKU from Postgres; returns its configured paused flag, None if impossible."""
    keys = inv.keys.sku(sku)
    for _ in range(_ATTEMPTS):
        with inv.redis.pipeline(transaction=True) as pipe, session_factory() as session:
            try:
                pipe.watch(keys.stock)
                seen = observe(pipe, inv, session, sku)
                expected = seen.expected
                if expected.available < 0:
                    pipe.reset()
                    return None
                buyers = buyer_units(session, sku, seen.events, inv.keys.partitions)
                carried = carried_units(seen.fields)  # light holds that stay and count their own units
                for _token, qty, user in seen.holds:
                    if user:  # the waitlist's pool of set-aside units belongs to no buyer
                        buyers[user] = buyers.get(user, 0) + qty
                for user, qty in carried.items():
                    buyers[user] = buyers.get(user, 0) - qty
                buyers = {user: units for user, units in buyers.items() if units}
                layout = {} if seen.fields.get("bk") or seen.fields.get("bq") else \
                    _split_layout(session, sku, inv.keys.partitions)
                bucketed = bucketed_offset(inv.redis, keys)  # after WATCH: a hold taken since fails EXEC
                pipe.multi()
                queue_counts(pipe, inv, sku, seen, expected, catalog=True, paused="r")
                if layout:
                    pipe.hset(keys.stock, mapping=layout)
                pipe.delete(keys.buyers)
                light = [field for field in seen.fields if field.startswith(LIGHT_PREFIX)]
                if light:
                    pipe.hdel(keys.stock, *light)
                if buyers:  # counted in the buyers hash from now on (lua/includes/common.lua, add_buyer_units)
                    pipe.hset(keys.buyers, mapping=buyers)
                    pipe.hset(keys.stock, MODE_FIELD, HEAVY)
                else:
                    pipe.hdel(keys.stock, MODE_FIELD)
                if bucketed:
                    pipe.hset(keys.stock, BUCKETED_FIELD, bucketed)
                else:
                    pipe.hdel(keys.stock, BUCKETED_FIELD)
                pipe.execute()
            except (WatchError, LedgerBusy):
                continue
            announce_counts(inv, sku)
        return str(catalog_fields(sku, seen)["paused"])
    raise RedisError(f"SKU {sku} kept changing during rebuild")


def _split_layout(session: Session, sku: str, partitions: int) -> dict[str, Any]:
    """Layout fields from what PostgreSQL knows, for a stock hash that was lost: a split SKU comes back
    with every bucket it ever created (none of their units is stranded) and as many active as it last
    reported (the sweeper empties the others into them), and a bucket with its quota mark."""
    product = product_of(sku)
    if is_quota(sku):
        return {}
    names = [name for name in session.scalars(select(ProductRow.sku).where(ProductRow.sku.like(f"{product}@%")))
             if product_of(name) == product]
    if is_internal(sku):
        return bucket_fields(sku, names)
    fields = layout_fields(sku, names, partitions)
    active = session.scalar(select(ProductRow.buckets).where(ProductRow.sku == sku)) or 0
    if fields and 1 <= active < fields["bkn"]:  # 0: split before the count was persisted: all stay active
        fields["bk"] = active
    return fields


def restore_order_records(inv: Inventory, session_factory: sessionmaker[Session], skus: Sequence[str]) -> int:
    """Recreate missing Redis records of recent orders on these SKUs, so payments and reads keep working."""
    if not skus:
        return 0
    since = inv.ctx.now_ms() - inv.settings.order_retention_seconds * 1000
    with session_factory() as session:
        order_ids = sorted(set(session.scalars(
            select(OrderLineRow.order_id).join(OrderRow).where(OrderLineRow.sku.in_(list(skus)),
                                                               OrderRow.created_ms >= since))))
        restored = 0
        for start in range(0, len(order_ids), 500):
            restored += _restore(inv, session, order_ids[start:start + 500])
    return restored


def _restore(inv: Inventory, session: Session, order_ids: list[str]) -> int:
    orders = list(session.scalars(select(OrderRow).where(OrderRow.id.in_(order_ids))))
    events: dict[str, list[PaymentEventRow]] = {}
    for row in session.scalars(select(PaymentEventRow).where(PaymentEventRow.order_id.in_(order_ids))):
        events.setdefault(row.order_id, []).append(row)
    records = [(order, q, record) for order in orders for q, record in _order_parts(inv, order, events)]
    check = inv.redis.pipeline(transaction=False)
    for order, q, _ in records:
        check.exists(inv.keys.parts[q].reservation(order.id[2:]))
    missing = [item for item, exists in zip(records, check.execute()) if not exists]
    retention = inv.settings.order_retention_seconds * 1000
    pipe = inv.redis.pipeline(transaction=False)
    for order, q, record in missing:
        part, token = inv.keys.parts[q], order.id[2:]
        pipe.hset(part.reservation(token), mapping=record)
        pipe.pexpire(part.reservation(token), retention)
        pipe.zadd(part.user_orders(order.user_id), {order.id: order.created_ms})
        if "pdl" in record:  # the sweeper expires the payment from the index, as after a checkout
            pipe.zadd(part.expiries, {token: record["pdl"]})
    pipe.execute()
    return len({order.id for order, _, _ in missing})


def _order_parts(inv: Inventory, order: OrderRow,
                 events: dict[str, list[PaymentEventRow]]) -> list[tuple[int, dict[str, Any]]]:
    """The Redis record of each part of an order (one per partition its lines live in; the home lists the rest)."""
    token = order.id[2:]
    home = inv.keys.of_token(token).index
    by_part: dict[int, list[Any]] = {home: []}  # an amend may have moved every line out of the home
    for line in order.lines:
        by_part.setdefault(inv.keys.partition_of(line.sku), []).append(line)
    out = []
    for q, lines in sorted(by_part.items()):
        record: dict[str, Any] = {"u": order.user_id, "st": order.status, "exp": order.created_ms,
                                  "ct": order.created_ms, "co": order.created_ms, "fp": "", "n": len(lines),
                                  "oid": order.id}
        if q == home and len(by_part) > 1:
            record["parts"] = ",".join(str(p) for p in sorted(by_part) if p != home)
        if q == home and order.status == "pending_payment":
            # Extensions (requires_action, the storefront's) are not in PostgreSQL: the rebuilt deadline is
            # the latest one any extension could have set, so no buyer's payment is expired early; an
            # unpaid order keeps its units at most until checkout + the lifetime cap.
            record["pdl"] = order.created_ms + inv.settings.max_payment_lifetime_seconds * 1000
        for line in lines:
            record[f"l:{line.sku}"] = line.qty
            record[f"p:{line.sku}"] = line.unit_price
        for event in events.get(order.id, []):
            record[f"ev:{event.event_id}"] = event.result
        out.append((q, record))
    return out


# -- Redis persistence settings --------------------------------------------------------------------


def redis_durability(redis: Any) -> str:
    """'aof-always' | 'aof-everysec' | 'aof-no' | 'no-aof', or 'unknown' when CONFIG is refused; on a
    cluster, the weakest master's setting."""
    modes = [_node_durability(node) for node in masters(redis)]
    return min(modes, key=_DURABILITY_ORDER.index)


_DURABILITY_ORDER = ["unknown", "no-aof", "aof-no", "aof-everysec", "aof-always"]


def _node_durability(redis: Any) -> str:
    try:
        appendonly = redis.config_get("appendonly").get("appendonly")
        fsync = redis.config_get("appendfsync").get("appendfsync", "everysec")
    except (ResponseError, AttributeError, KeyError):
        return "unknown"
    if text(appendonly or "no") != "yes":
        return "no-aof"
    return f"aof-{text(fsync)}"


def warn_if_not_durable(inv: Inventory) -> str:
    """Log at start-up what a Redis restart could lose with its current persistence setting."""
    if inv.settings.redis_url.startswith(MEMORY_URL):
        log.warning("embedded Redis (memory://): state lives in this process; it is rebuilt from %s at start",
                    inv.settings.database_url)
        return "embedded"
    try:
        mode = redis_durability(inv.redis)
    except RedisError as error:
        log.warning("cannot read Redis persistence settings: %s", error)
        return "unknown"
    if mode == "no-aof":
        log.warning("Redis runs WITHOUT AOF: a restart loses every hold, checkout and payment result since "
                    "the last RDB snapshot (or all of them) that was not yet persisted; turn on appendonly")
    elif mode == "unknown":
        log.warning("Redis refused CONFIG GET: cannot verify that AOF is on (needed to survive restarts)")
    elif mode == "aof-no":
        log.warning("Redis AOF with appendfsync no: a crash can lose about 30 s of unpersisted writes")
    else:
        log.info("Redis persistence: %s", mode)
    return mode
