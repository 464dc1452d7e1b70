"""The reservation scripts on one partition's part of a reservation: one typed call each, one slot each.

A reservation lives in one partition when all its lines do (the common case); otherwise it has a home
part (the partition its token names) and one part per other partition, all under the same token.
Everything here acts on exactly one part; inventory/multipart.py composes them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Sequence

from inventory.context import Context
from inventory.errors import InvalidArgument, RateLimited, SoldOut, StaleRead
from inventory.keys import HOLD_BUCKETS, Partition
from inventory.models import RateLimit
from inventory.records import read_record

_STALE_RETRIES = 5
_DUE_RETRIES = 3  # a reserve refused while holds were due in buckets it could not reach: sweep, try again
PIN_WINDOW_MS = 30_000  # a checkout that pinned parts and then stalled is resolved by the sweeper after this


def fingerprint(user_id: str, lines: list[tuple[str, int]], ttl_ms: int) -> str:
    """What a reserve request asked for; the same token with another fingerprint is a conflict."""
    body = json.dumps([user_id, sorted(lines), ttl_ms], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15


def with_waitlist(error: SoldOut, max_length: int) -> SoldOut:
    """The same refusal, saying whether the SKU's waitlist takes another buyer and how long it is.

    The script's `true_for_ms` (until the SKU's next hold expires) is kept off the answer, as the
    refusal's `true_for_ms` attribute for the sold-out cache (inventory/soldout.py).
    """
    details = dict(error.details)
    length = int(details.get("waitlist_length") or 0)
    true_for = details.pop("true_for_ms", None)
    details.pop("due_bucket", None)
    refusal = SoldOut(error.message, **{**details, "waitlist_length": length, "waitlist_open": length < max_length})
    refusal.true_for_ms = int(true_for) if true_for is not None else None  # type: ignore[attr-defined]
    return refusal


def skus_of(record: dict[str, str]) -> list[str]:
    """A record's line SKUs in order."""
    return sorted(field[2:] for field in record if field.startswith("l:"))


class PartCalls:
    """Typed calls of the reservation scripts on one part (record + its partition's keys)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings

    def read(self, part: Partition, token: str) -> dict[str, str]:
        """The part's record ({} when there is none)."""
        return read_record(self.ctx.redis, part, token)

    def reserve(self, part: Partition, token: str, user_id: str, fp: str, ttl_ms: int,
                lines: Sequence[tuple[str, int]], *, others: str = "",
                rate_limits: Sequence[RateLimit] = (), routed: dict[str, str] | None = None) -> list[Any]:
        """Hold this part's lines; `others` names the other parts' partitions (home part only); `routed`
        says how each line went through inventory/buckets.py ('1' a bucket, '2' a bucket with its
        quota line, or a quota line; missing: not routed): a split SKU refuses a call routed by an
        older layout."""
        def call(limits: Sequence[RateLimit]) -> list[Any]:
            keys = [part.reservation(token), part.expiries, part.dirty, part.sale_switch]
            keys += self.ctx.indexed_line_keys([sku for sku, _ in lines], token)
            keys += [bucket.key for bucket in limits] + [part.record_bucket(token)]
            args: list[Any] = [token, user_id, fp, ttl_ms, self.settings.record_retention_seconds * 1000,
                               len(limits), others, "".join(routed.get(sku, "0") for sku, _ in lines)
                               if routed else ""]
            for sku, qty in lines:
                args += [sku, qty]
            for bucket in limits:
                args += [bucket.limit, bucket.window_seconds]
            return self.ctx.run("reserve", keys, args)

        try:
            return self._sweeping_when_due(part, lambda first: call(rate_limits if first else ()))
        except SoldOut as error:
            raise with_waitlist(error, self.settings.waitlist_max_length) from None
        except RateLimited as error:
            bucket = rate_limits[int(error.details["bucket"]) - 1]
            raise RateLimited(error.message, limit=bucket.label or str(bucket.limit),
                              retry_after_ms=int(error.details["retry_after_ms"])) from None

    def _sweeping_when_due(self, part: Partition, call: Callable[[bool], list[Any]]) -> list[Any]:
        """call(first attempt?) of reserve or amend; refused while a busy SKU had holds due in hold buckets
        the call could not reach (its lazy expiry sees only the token's), it sweeps the SKU and calls
        again, so expired holds come back to the next buyer even when no sweeper runs. A refused call
        changed nothing but a reserve's rate-limit counts, so only the first attempt counts them."""
        for attempt in range(_DUE_RETRIES + 1):
            try:
                return call(attempt == 0)
            except SoldOut as error:
                due = error.details.get("due_bucket")
                if attempt == _DUE_RETRIES or due is None or int(due) < 0:
                    raise
                self.sweep_holds(part, str(error.details["sku"]), self.settings.sweep_batch_size)
        raise AssertionError("unreachable")  # pragma: no cover

    def count_requests(self, buckets: Sequence[RateLimit]) -> None:
        """Count one request in each rate-limit bucket, all in one pipelined round trip (their keys live in
        other slots than the reservation's, so the reserve script cannot count them); RateLimited if any
        is over its limit. Same fixed windows as the reserve script's: the window opens with the first
        request (SET NX EX before INCR in one write, so a counter never lives without its expiry)."""
        for bucket in buckets:  # the reserve script's own checks, before anything is counted
            if not (_count(bucket.limit) and _count(bucket.window_seconds) and bucket.window_seconds >= 1):
                raise InvalidArgument("Invalid argument (a quantity above the maximum, a malformed id, ...).",
                                      argument="rate_limits")
        pipe = self.ctx.redis.pipeline(transaction=False)
        for bucket in buckets:
            pipe.set(bucket.key, 0, ex=bucket.window_seconds, nx=True)
            pipe.incr(bucket.key)
            pipe.pttl(bucket.key)
        replies = pipe.execute()
        for j, bucket in enumerate(buckets):
            count, pttl = int(replies[3 * j + 1]), int(replies[3 * j + 2])
            if count > bucket.limit:
                raise RateLimited("Too many requests; slow down.", limit=bucket.label or str(bucket.limit),
                                  retry_after_ms=max(pttl, 1))

    def amend(self, part: Partition, token: str, user_id: str, wanted: dict[str, int],
              record: dict[str, str] | None = None, *, routed: bool = False) -> list[Any]:
        """Set new quantities of this part's lines (every current line is named, so holds are checked);
        `routed` when the changes went through the current stock-bucket layout (inventory/buckets.py)."""
        def call(skus: list[str], _owner: str) -> list[Any]:
            every = sorted(set(skus) | set(wanted))
            args: list[Any] = [token, user_id, "1" if routed else ""]
            for sku in every:
                args += [sku, wanted.get(sku, "")]
            keys = [part.reservation(token), part.expiries, part.dirty, part.sale_switch]
            keys += self.ctx.indexed_line_keys(every, token) + [part.record_bucket(token)]
            try:
                return self._sweeping_when_due(part, lambda _: self.ctx.run("amend", keys, args))
            except SoldOut as error:
                raise with_waitlist(error, self.settings.waitlist_max_length) from None
        return self.on_lines(part, token, call, record)

    def release(self, part: Partition, token: str, user_id: str, mode: str,
                record: dict[str, str] | None = None) -> list[Any]:
        """Cancel ('cancel') or expire ('expire', only once due) this part's holds."""
        return self.on_lines(part, token, lambda skus, _: self.release_lines(part, token, skus, user_id, mode), record)

    def release_lines(self, part: Partition, token: str, skus: list[str], user_id: str, mode: str) -> list[Any]:
        return self.ctx.run(
            "release",
            [part.reservation(token), part.expiries, part.dirty, *self.ctx.line_keys(skus, token),
             part.record_bucket(token)],
            [token, user_id, mode, self.settings.record_retention_seconds * 1000, *skus],
        )

    def sweep_holds(self, part: Partition, sku: str, batch: int) -> tuple[int, int, bool]:
        """Give back one SKU's expired holds (at most `batch`), one call per due hold bucket, each naming
        the next: (holds, units, more may be due)."""
        keys = self.ctx.keys.sku(sku)
        holds = units = 0
        bucket = 0  # any: the first call reaches the zset's and a light SKU's holds whatever it names
        for _ in range(HOLD_BUCKETS + 1):
            reply = self.ctx.run("sweep_holds", [part.expiries, part.dirty, keys.stock, keys.holds, keys.buyers,
                                                 keys.waitinfo, keys.index, keys.hold_bucket(bucket)],
                                 [sku, batch - holds])
            holds, units, bucket = holds + int(reply[0]), units + int(reply[1]), int(reply[3])
            if int(reply[2]) or holds >= batch:
                return holds, units, True
            if bucket < 0:
                return holds, units, False
        return holds, units, True

    def reindex_bucket(self, part: Partition, bucket: str) -> None:
        """Move an index bucket's entry in the partition's expiry index to its earliest SKU (or drop it)."""
        self.ctx.run("reindex_bucket", [part.expiries, bucket], [])

    def checkout(self, part: Partition, token: str, user_id: str, order_id: str, request_id: str,
                 generation: str = "", record: dict[str, str] | None = None) -> list[Any]:
        """held -> sold for this part's lines, with its order event in the partition's outbox.

        The home part (or the only part) gets the payment deadline; other parts follow their home's.
        """
        window = self.settings.payment_ttl_seconds * 1000 if self.ctx.keys.of_token(token) == part else 0
        return self.on_lines(part, token, lambda skus, owner: self.ctx.run(
            "checkout",
            [part.reservation(token), part.expiries, part.dirty, part.outbox, part.user_orders(owner)]
            + self.ctx.line_keys(skus, token) + [part.record_bucket(token)],
            [token, user_id, order_id, self.settings.order_retention_seconds * 1000, *skus, request_id, generation,
             window],
        ), record)

    def extend(self, part: Partition, token: str, user_id: str, extension_id: str, by_ms: int, clamp: bool,
               record: dict[str, str] | None = None, *, follow_ms: int = 0) -> list[Any]:
        """Move this part's hold expiry (or its order's payment deadline) to now + by_ms, once per id;
        with follow_ms, another part takes the home's new expiry exactly."""
        s = self.settings
        return self.on_lines(part, token, lambda skus, _: self.ctx.run(
            "extend", [part.reservation(token), part.expiries, part.dirty] + self.ctx.line_keys(skus, token)
            + [part.record_bucket(token)],
            [token, user_id, extension_id, by_ms, s.max_hold_lifetime_seconds * 1000,
             s.max_payment_lifetime_seconds * 1000, int(clamp), follow_ms, *skus],
        ), record)

    def record_payment(self, part: Partition, token: str, event_id: str, result: str, order_id: str,
                       request_id: str, record: dict[str, str] | None = None) -> list[Any]:
        """Apply a payment result to this part once per event id."""
        return self.on_lines(part, token, lambda skus, owner: self.ctx.run(
            "record_payment",
            [part.reservation(token), part.expiries, part.dirty, part.outbox, part.user_orders(owner)]
            + self.ctx.line_keys(skus, token) + [part.record_bucket(token)],
            [token, event_id, result, order_id, self.settings.order_retention_seconds * 1000, *skus, request_id],
        ), record)

    def pin(self, part: Partition, token: str, mode: str) -> list[Any]:
        """Pin ('pin') this part for a checkout of its home, or let it go again ('unpin')."""
        return self.on_lines(part, token, lambda skus, _: self.ctx.run(
            "pin_part", [part.reservation(token), part.expiries, part.dirty] + self.ctx.line_keys(skus, token)
            + [part.record_bucket(token)],
            [token, mode, PIN_WINDOW_MS, *skus]))

    def attach_parts(self, home: Partition, token: str, user_id: str, others: Sequence[int]) -> list[Any]:
        """At the home: record the other parts (an amend reserved new ones)."""
        return self.ctx.run("attach_parts", [home.reservation(token), home.record_bucket(token)], [token, user_id, ",".join(map(str, others))])

    def abort_checkout(self, home: Partition, token: str) -> list[Any]:
        """At the home: give up an unfinished checkout unless it committed ({1, status} then)."""
        return self.ctx.run("abort_checkout", [home.reservation(token), home.record_bucket(token)], [token])

    def on_lines(self, part: Partition, token: str, call: Callable[[list[str], str], list[Any]],
                 record: dict[str, str] | None = None) -> list[Any]:
        """Run a script that needs the part's SKUs (and owner) in KEYS; retry if lines changed meanwhile.

        One read gives both (or `record`, when the caller has just read it); a missing record passes
        no SKUs and owner '' and the script answers 'not found'.
        """
        for attempt in range(_STALE_RETRIES):
            if attempt or record is None:
                record = self.read(part, token)
            try:
                return call(skus_of(record), record.get("u", ""))
            except StaleRead:
                continue
        raise StaleRead("The reservation kept changing; try again.")
