"""The reservation lifecycle: reserve, amend, release, checkout, payment results, expiry."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping, Sequence

from inventory import ids
from inventory.buckets import MAX_RETRIES, Buckets, Layout, is_internal, is_quota, product_of
from inventory.context import Context, text
from inventory.errors import (
    BucketsChanged,
    InvalidArgument,
    InventoryError,
    OrderNotFound,
    ReservationClosed,
    ReservationNotFound,
    SoldOut,
    StaleRead,
)
from inventory.keys import HOLDS_IN, HOLDS_OF, Partition
from inventory.models import (
    Extension, Line, Order, PaymentOutcome, RateLimit, Reservation, Status, SweepResult, from_ms,
)
from inventory.multipart import MultiPart, other_parts
from inventory.part_calls import PartCalls, fingerprint
from inventory.records import queue_read, record_of
from inventory.soldout import SoldOutCache
from inventory.validation import check_lines, check_request_id, check_user

PAYMENT_RESULTS = ("paid", "failed", "requires_action")

log = logging.getLogger(__name__)


def _lines_of(record: dict[str, str]) -> tuple[Line, ...]:
    return tuple(
        Line(sku=field[2:], qty=int(value), unit_price=int(record.get(f"p:{field[2:]}", 0)))
        for field, value in sorted(record.items())
        if field.startswith("l:")
    )


def _quota_units(record: dict[str, str]) -> int:
    """Units of a record's quota lines (stock-bucket per-user counts, not units of stock)."""
    return sum(int(v) for f, v in record.items() if f.startswith("l:") and is_quota(f[2:]))


def _named_for_product(error: InventoryError) -> InventoryError:
    """The same error naming the product where a script named one of its stock buckets or quotas."""
    sku = error.details.get("sku")
    if not isinstance(sku, str) or not is_internal(sku):
        return error
    named = type(error)(error.message, **{**error.details, "sku": product_of(sku)})
    named.__dict__.update({k: v for k, v in error.__dict__.items() if k not in ("message", "details")})
    return named


class Reservations:
    """Typed operations over the reservation scripts; one part, or several partitions' parts as one."""

    def __init__(self, ctx: Context, buckets: Buckets | None = None) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.buckets = buckets or Buckets(ctx)
        self.calls = PartCalls(ctx)
        self.multi = MultiPart(ctx, self.calls)
        self.soldout: SoldOutCache | None = None  # set by an API process (inventory/soldout.py)

    # -- writes -----------------------------------------------------------------------------

    def reserve(
        self,
        user_id: str,
        items: Mapping[str, int] | Iterable[tuple[str, int]],
        *,
        ttl_seconds: int | None = None,
        idempotency_key: str | None = None,
        rate_limits: Sequence[RateLimit] | Callable[[], Sequence[RateLimit]] = (),
    ) -> Reservation:
        """Hold stock for a user, all lines or none; a repeated idempotency key replays the original.

        Each of `rate_limits` counts this call; if one is over its limit, RateLimited and nothing held.
        Given as a function, it is called only when the call goes to Redis (a sold-out answer from this
        process's cache counts nothing, so it needs no counters).
        """
        check_user(user_id)
        lines = check_lines(items)
        ttl = self.settings.hold_ttl_seconds if ttl_seconds is None else ttl_seconds
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= self.settings.max_hold_ttl_seconds:
            raise InvalidArgument(
                f"ttl_seconds must be from 1 to {self.settings.max_hold_ttl_seconds}.", field="ttl_seconds"
            )
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise InvalidArgument("Idempotency keys are 1-255 characters.", field="idempotency_key")
        cache = self.soldout if idempotency_key is None else None  # a keyed retry must replay its hold
        ticket = (0, 0.0)
        if cache is not None:
            cache.refuse(lines)  # sold out as far as this process knows for sure: no Redis call
            ticket = cache.begin()
        counters = rate_limits() if callable(rate_limits) else rate_limits
        try:
            return self._reserve(user_id, lines, ttl, idempotency_key, counters)
        except SoldOut as refused:
            if cache is not None:
                cache.learn(refused, ticket)
            raise
        except InventoryError as error:
            raise _named_for_product(error) from None

    def _reserve(self, user_id: str, lines: list[tuple[str, int]], ttl: int, idempotency_key: str | None,
                 rate_limits: Sequence[RateLimit]) -> Reservation:
        layouts = self.buckets.layouts(sku for sku, _ in lines)
        if not any(layout.split for layout in layouts.values()):
            try:
                return self._reserve_lines(user_id, lines, lines, ttl, idempotency_key, rate_limits, {})
            except BucketsChanged:  # split since this process read the layout: route it
                layouts = self.buckets.layouts((sku for sku, _ in lines), fresh=True)
                rate_limits = ()  # counted already: every path counts before the script looks at the lines
        return self._reserve_split(user_id, lines, ttl, idempotency_key, rate_limits, layouts)

    def _reserve_split(self, user_id: str, lines: list[tuple[str, int]], ttl: int, idempotency_key: str | None,
                       rate_limits: Sequence[RateLimit], layouts: dict[str, Layout]) -> Reservation:
        """Reserve through the stock buckets: the user's bucket first, then the fullest ones (inventory/buckets.py).

        A keyed request tries only its first buckets, so a retry of it finds the same parts to replay.
        """
        if rate_limits:  # counted once, not once per bucket tried
            self.calls.count_requests(rate_limits)
        chosen: dict[str, list[tuple[str, int]]] = {}
        tried: dict[str, set[str]] = {}
        attempts = 1 if idempotency_key else 1 + MAX_RETRIES
        for attempt in range(attempts + 1):  # + 1: one more after the layout changed under this request
            script_lines = self.buckets.route(user_id, lines, layouts, chosen)
            try:
                return self._reserve_lines(user_id, lines, script_lines, ttl, idempotency_key, (), layouts)
            except SoldOut as refused:
                bucket = str(refused.details.get("sku"))
                layout = layouts.get(product_of(bucket))
                if layout is None or not layout.split or is_quota(bucket):
                    raise
                qty = dict(lines)[layout.sku]
                tried.setdefault(layout.sku, set()).add(bucket)
                following, units = self.buckets.plan(layout, qty, tried[layout.sku])
                if following is None or attempt >= attempts - 1:
                    waiting = int(self.ctx.redis.hget(self.ctx.keys.sku(layout.sku).stock, "wn") or 0)
                    error = SoldOut(refused.message, **{**refused.details, "sku": layout.sku, "available": units,
                                                        "waitlist_length": waiting, "waitlist_open":
                                                        waiting < self.settings.waitlist_max_length})
                    error.true_for_ms = None  # type: ignore[attr-defined]
                    error.with_stock = units >= qty  # type: ignore[attr-defined]  # a false sold-out, counted
                    self.buckets.refused_with_stock += error.with_stock  # type: ignore[attr-defined]
                    raise error from None
                chosen[layout.sku] = following
            except BucketsChanged:
                if attempt == attempts:
                    raise
                layouts = self.buckets.layouts((sku for sku, _ in lines), fresh=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _reserve_lines(self, user_id: str, lines: list[tuple[str, int]], script_lines: list[tuple[str, int]],
                       ttl: int, idempotency_key: str | None, rate_limits: Sequence[RateLimit],
                       layouts: dict[str, Layout]) -> Reservation:
        """Reserve `script_lines` (the product `lines`, routed through buckets where split) as one reservation."""
        keys = self.ctx.keys
        routed = self.buckets.routes(script_lines, layouts) if layouts else {}  # {}: nothing split (hot path)
        by_part: dict[int, list[tuple[str, int]]] = {}
        for sku, qty in script_lines:
            by_part.setdefault(keys.partition_of(sku), []).append((sku, qty))
        # The home is fixed by the request (never by the bucket that served it): a keyed retry finds its record.
        anchors = [sku for sku, _ in script_lines if is_quota(sku) or sku not in routed] if routed else []
        home = keys.partition_of(min(anchors or [sku for sku, _ in script_lines]))
        base = ids.token_for_key(user_id, idempotency_key) if idempotency_key else ids.new_token()
        token = keys.token_in(base, home)
        ttl_ms = ttl * 1000
        fp = fingerprint(user_id, lines, ttl_ms) if idempotency_key else ""  # a random token cannot recur
        if len(by_part) > 1:
            reply, prices = self.multi.reserve(token, user_id, fp, ttl_ms, by_part, rate_limits, routed=routed)
        else:
            if self.ctx.cluster and rate_limits:  # buckets live in other slots: counted first, one round trip
                self.calls.count_requests(rate_limits)
                rate_limits = ()
            reply = self.calls.reserve(keys.parts[home], token, user_id, fp, ttl_ms, script_lines,
                                       rate_limits=rate_limits, routed=routed)
            prices = {sku: int(p) for (sku, _), p in zip(script_lines, reply[3:])}
        if int(reply[0]) == 1:
            return replace(self.get(ids.reservation_id(token)), replayed=True)
        if len(by_part) > 1 and len(prices) < len(script_lines):  # a retry whose earlier attempt left parts behind
            return self.get(ids.reservation_id(token))
        price_of = {product_of(sku): p for sku, p in prices.items() if not is_quota(sku)} if routed else prices
        return Reservation(
            id=ids.reservation_id(token),
            user_id=user_id,
            status=Status.HELD,
            lines=tuple(Line(sku, qty, price_of.get(sku, 0)) for sku, qty in lines),
            created_at=from_ms(int(reply[2])),  # type: ignore[arg-type]
            expires_at=from_ms(int(reply[1])),  # type: ignore[arg-type]
        )

    def amend(self, reservation_id: str, changes: Mapping[str, int] | Iterable[tuple[str, int]], *,
              user_id: str | None = None) -> Reservation:
        """Set new quantities for some lines of an open reservation (0 removes a line)."""
        token = self._token(reservation_id)
        products = dict(check_lines(changes, allow_zero=True))
        home = self.ctx.keys.of_token(token)
        record = self.calls.read(home, token)
        for fresh in (False, True):
            wanted, routed = self._through_buckets(token, record, products, fresh=fresh)
            try:
                if other_parts(record) or any(self.ctx.keys.partition_of(sku) != home.index for sku in wanted):
                    self.multi.amend(token, record, wanted, user_id or "", routed=routed)
                else:
                    self.calls.amend(home, token, user_id or "", wanted, record, routed=routed)
                break
            except BucketsChanged:  # split (or given quotas) since this process read the layout
                if fresh:
                    raise
                record = self.calls.read(home, token)
            except InventoryError as error:
                raise _named_for_product(error) from None
        return self.get(reservation_id, user_id=user_id)

    def release(self, reservation_id: str, *, user_id: str | None = None) -> Reservation:
        """Cancel a hold: its stock returns exactly once; releasing again is harmless."""
        token = self._token(reservation_id)
        home = self.ctx.keys.of_token(token)
        record = self.calls.read(home, token)
        if other_parts(record):
            self.multi.release(token, user_id or "")
        else:
            self.calls.release(home, token, user_id or "", "cancel", record)
        return self.get(reservation_id, user_id=user_id)

    def checkout(self, reservation_id: str, *, user_id: str | None = None, request_id: str = "") -> Order:
        """Turn an open hold into an order awaiting payment; repeating returns the same order."""
        check_request_id(request_id)
        token = self._token(reservation_id)
        home = self.ctx.keys.of_token(token)
        record = self.calls.read(home, token)
        if record.get("fp") == "waitlist" and self.count_in_quota(token, record):
            record = self.calls.read(home, token)
        if other_parts(record):
            reply = self.multi.checkout(token, record, user_id or "", ids.order_id(token), request_id)
        else:
            reply = self.calls.checkout(home, token, user_id or "", ids.order_id(token), request_id, record=record)
        order = self.get_order(text(reply[1]))
        return replace(order, replayed=int(reply[0]) == 1)

    def record_payment(self, *, event_id: str, result: str, reservation_id: str | None = None,
                       order_id: str | None = None, request_id: str = "") -> PaymentOutcome:
        """Apply a payment provider's 'paid' / 'failed' result once per event id; 'requires_action' (the
        buyer is in a 3-D Secure challenge) extends the hold or the payment deadline instead."""
        check_request_id(request_id)
        if result not in PAYMENT_RESULTS:
            raise InvalidArgument("status must be 'paid', 'failed' or 'requires_action'.", field="status")
        if not event_id or len(event_id) > 255:
            raise InvalidArgument("event_id must be 1-255 characters.", field="event_id")
        if (reservation_id is None) == (order_id is None):
            raise InvalidArgument("Give exactly one of order_id and reservation_id.", field="order_id")
        token = ids.token_of(order_id, "o") if order_id else ids.token_of(reservation_id or "", "r")
        if token is None:
            raise (OrderNotFound if order_id else ReservationNotFound)("No such order or reservation.")
        if result == "requires_action":
            return self._provider_extension(token, event_id, order_id is not None)
        home = self.ctx.keys.of_token(token)
        try:
            record = self.calls.read(home, token)
            if other_parts(record):
                reply = self.multi.record_payment(token, record, event_id, result, ids.order_id(token), request_id)
            else:
                reply = self.calls.record_payment(home, token, event_id, result, ids.order_id(token), request_id,
                                                  record)
        except ReservationNotFound:
            if order_id:
                raise OrderNotFound("No such order.") from None
            raise
        return PaymentOutcome(
            event_id=event_id,
            reservation_id=ids.reservation_id(token),
            order_id=text(reply[2]) or None,
            status=Status(text(reply[1])),
            replayed=int(reply[0]) == 1,
        )

    def extend(self, reservation_id: str, *, seconds: int, extension_id: str, user_id: str | None = None,
               clamp: bool = False) -> Extension:
        """Move an open hold's expiry, or its order's payment deadline, to now + seconds, once per id.

        Never shortens; past the configured lifetime cap it raises ExtensionLimit (or, with `clamp`, as
        the payment provider's extension does, stops at the cap).
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= 86_400:
            raise InvalidArgument("seconds must be from 1 to 86400.", field="seconds")
        if not isinstance(extension_id, str) or not 1 <= len(extension_id) <= 255:
            raise InvalidArgument("extension_id must be 1-255 characters.", field="extension_id")
        token = self._token(reservation_id)
        home = self.ctx.keys.of_token(token)
        record = self.calls.read(home, token)
        reply = self.calls.extend(home, token, user_id or "", extension_id, seconds * 1000, clamp, record)
        if text(reply[1]) == "hold":
            # The home's cap and count decide; the other parts then take its expiry exactly. A crash in
            # between leaves parts that expire first (their stock comes back; a retry of the same id
            # brings them level), never parts that outlive the reservation.
            for q in other_parts(record):
                self.calls.extend(self.ctx.keys.parts[q], token, user_id or "", extension_id, seconds * 1000,
                                  clamp, follow_ms=int(reply[2]))
        return Extension(reservation_id=ids.reservation_id(token), kind=text(reply[1]),
                         until=from_ms(int(reply[2])),  # type: ignore[arg-type]
                         extensions=int(reply[3]), replayed=int(reply[0]) == 1)

    def expire_payment(self, part: Partition, token: str) -> list[Any]:
        """End a pending order whose payment deadline passed (its units go back once); {2, ...} if not due."""
        record = self.calls.read(part, token)
        if not other_parts(record):
            return self.calls.record_payment(part, token, "", "expire", ids.order_id(token), "", record)
        self.multi.mark_pending(part, token)  # a crash before the parts follow is finished by the sweeper
        reply = self.calls.record_payment(part, token, "", "expire", ids.order_id(token), "", record)
        self.multi.converge(token)
        return reply

    def expire_due(self, *, batch_size: int | None = None, max_batches: int = 50) -> SweepResult:
        """Give back expired holds (per SKU) and end pending orders past their payment deadline, and pinned
        parts past their window (per token), in bounded batches, per partition."""
        size = batch_size or self.settings.sweep_batch_size
        expired = returned = batches = 0
        now = self.ctx.now_ms()
        for part in self.ctx.keys.parts:
            self.multi.converge_pending(part, now)
            for _ in range(max_batches):
                batches += 1
                due = [text(t) for t in self.ctx.redis.zrangebyscore(part.expiries, "-inf", now, start=0, num=size)]
                tokens = [member for member in due if not member.startswith((HOLDS_OF, HOLDS_IN))]
                more = False  # a bucket or a SKU had more due than one batch: its entry is still due
                budget = size  # SKUs swept in this batch, over all its buckets: a batch stays bounded
                for member in due:
                    if member.startswith(HOLDS_IN):
                        if budget < 1:
                            more = True  # the rest of the due buckets wait for the next batch
                            continue
                        holds, units, full, swept = self._sweep_bucket(part, member[len(HOLDS_IN):], now, budget)
                        budget -= swept
                    elif member.startswith(HOLDS_OF):  # listed before the index buckets
                        sku = member[len(HOLDS_OF):]
                        holds, units, full = self.calls.sweep_holds(part, sku, size)
                        units = 0 if is_quota(sku) else units  # a quota line holds no stock
                    else:
                        continue
                    more = more or full
                    expired += holds
                    returned += units
                for token in tokens:
                    try:
                        holds, units = self._expire_token(part, token)
                    except InventoryError as error:  # stays listed and is retried; one token never stops the sweep
                        log.error("reservation token=%s could not be expired: %s", token, error)
                        continue
                    expired += holds
                    returned += units
                if len(due) < size and not more:
                    break
        return SweepResult(expired=expired, units_returned=returned, batches=batches)

    def _sweep_bucket(self, part: Partition, number: str, now: int, size: int) -> tuple[int, int, bool, int]:
        """Give back the due holds of up to `size` of index bucket `number`'s due SKUs: (holds, units, more
        may be due, SKUs swept)."""
        if not number.isdigit() or int(number) >= part.index_buckets:
            log.error("expiry index of partition %d lists no such bucket: %r (dropped)", part.index, number)
            self.ctx.redis.zrem(part.expiries, HOLDS_IN + number)  # no script writes one: nothing to race
            return 0, 0, False, 0
        bucket = part.index_bucket(int(number))
        skus = [text(m)[len(HOLDS_OF):] for m in self.ctx.redis.zrangebyscore(bucket, "-inf", now, start=0, num=size)]
        if not skus:  # listed early (cannot happen while scripts keep it at its earliest SKU): move it on
            self.calls.reindex_bucket(part, bucket)
            return 0, 0, False, 0
        expired = returned = 0
        more = len(skus) == size
        for sku in skus:
            holds, units, full = self.calls.sweep_holds(part, sku, size)
            more = more or full
            expired += holds
            returned += 0 if is_quota(sku) else units  # a quota line holds no stock
        return expired, returned, more, len(skus)

    def _expire_token(self, part: Partition, token: str) -> tuple[int, int]:
        """Expire a reservation (or its part here) listed by token: (reservations expired, units returned)."""
        record = self.calls.read(part, token)
        try:
            reply = self.calls.release(part, token, "", "expire", record)
            if int(reply[0]) == 3:  # a pinned part of a checkout that did not finish
                self.multi.resolve_pinned(part, token)
                return 0, 0
        except ReservationClosed as closed:
            if closed.details.get("status") == "pending_payment":  # listed by its payment deadline
                self._sweep_payment(part, token)
            return 0, 0
        except (ReservationNotFound, StaleRead):
            return 0, 0  # gone or changed since it was listed: nothing to expire
        if int(reply[0]) != 0:
            return 0, 0
        # a reservation counts once, not per part; a quota line holds no stock
        return int(self.ctx.keys.of_token(token) == part), int(reply[2]) - _quota_units(record)

    def _provider_extension(self, token: str, event_id: str, by_order: bool) -> PaymentOutcome:
        """A 'requires_action' event: extend by the configured step, stopping at the lifetime cap."""
        try:
            extension = self.extend(ids.reservation_id(token), seconds=self.settings.requires_action_extension_seconds,
                                    extension_id=f"event:{event_id}", clamp=True)
        except ReservationNotFound:
            if by_order:
                raise OrderNotFound("No such order.") from None
            raise
        record = self.calls.read(self.ctx.keys.of_token(token), token)
        return PaymentOutcome(event_id=event_id, reservation_id=extension.reservation_id,
                              order_id=record.get("oid"), status=self._status_now(Status(record["st"]), record),
                              replayed=extension.replayed, extended_until=extension.until)

    def _sweep_payment(self, part: Partition, token: str) -> None:
        try:
            self.expire_payment(part, token)
        except (ReservationNotFound, StaleRead):
            pass  # gone or changed since it was listed

    # -- reads ------------------------------------------------------------------------------

    def get(self, reservation_id: str, *, user_id: str | None = None) -> Reservation:
        """A reservation as it stands now; another user's reservation is 'not found'."""
        token = self._token(reservation_id)
        record = self.calls.read(self.ctx.keys.of_token(token), token)
        if not record or (user_id is not None and record["u"] != user_id):
            raise ReservationNotFound("No such reservation.", reservation_id=reservation_id)
        status = Status(record["st"])
        lines, parts_held = self._all_lines(token, record)
        status = self._status_now(status, record, parts_held)
        return Reservation(
            id=reservation_id,
            user_id=record["u"],
            status=status,
            lines=lines,
            created_at=from_ms(int(record["ct"])),  # type: ignore[arg-type]
            expires_at=from_ms(int(record["exp"])),  # type: ignore[arg-type]
            order_id=record.get("oid"),
            extensions=int(record.get("ext", 0)),
        )

    def get_order(self, order_id: str, *, user_id: str | None = None) -> Order:
        """An order (checked-out reservation) with its payment status."""
        token = ids.token_of(order_id, "o")
        record = self.calls.read(self.ctx.keys.of_token(token), token) if token else {}
        if not record or record.get("oid") != order_id or (user_id is not None and record["u"] != user_id):
            raise OrderNotFound("No such order.", order_id=order_id)
        return self._order_of(record, token)  # type: ignore[arg-type]

    def list_orders(self, user_id: str, *, limit: int = 50) -> list[Order]:
        """A user's most recent orders, newest first."""
        check_user(user_id)
        pipe = self.ctx.redis.pipeline(transaction=False)
        for part in self.ctx.keys.parts:  # each partition indexes the orders (and order parts) it holds
            pipe.zrevrange(part.user_orders(user_id), 0, limit - 1, withscores=True)
        newest: dict[str, float] = {}
        for order, score in (item for found in pipe.execute() for item in found):
            newest[text(order)] = max(score, newest.get(text(order), score))
        order_ids = sorted(newest, key=lambda o: -newest[o])[:limit]
        pipe = self.ctx.redis.pipeline(transaction=False)
        tokens = [ids.token_of(o, "o") or "" for o in order_ids]
        for token in tokens:
            queue_read(pipe, self.ctx.keys.of_token(token), token)
        replies = pipe.execute()
        records = [record_of(packed, own) for packed, own in zip(replies[::2], replies[1::2])]
        return [self._order_of(record, token) for record, token in zip(records, tokens) if record]

    def count_in_quota(self, token: str, record: dict[str, str]) -> bool:
        """Give a claimed waitlist offer on a split SKU with a per-user limit its quota line, so the limit
        counts its units (claim does it; checkout again, for a claim stopped before it); True if added.
        LimitExceeded when the buyer's units elsewhere leave no room: the caller gives the offer back."""
        owner = record.get("u", "")
        lines = {f[2:]: int(v) for f, v in record.items() if f.startswith("l:")}
        wanted: dict[str, int] = {}
        for sku, units in lines.items():
            layout = self.buckets.layout(sku, fresh=True) if not is_internal(sku) else None
            if layout is not None and layout.quota and layout.quota_for(owner) not in lines:
                wanted[layout.quota_for(owner)] = units
        if not wanted:
            return False
        home = self.ctx.keys.of_token(token)
        if other_parts(record) or any(self.ctx.keys.partition_of(sku) != home.index for sku in wanted):
            present = {f[2:] for q in other_parts(record)
                       for f in self.calls.read(self.ctx.keys.parts[q], token) if f.startswith("l:")}
            wanted = {sku: units for sku, units in wanted.items() if sku not in present}
            if wanted:
                self.multi.amend(token, record, wanted, owner, routed=True)
        else:
            self.calls.amend(home, token, owner, wanted, record, routed=True)
        return bool(wanted)

    # -- helpers ----------------------------------------------------------------------------

    def _through_buckets(self, token: str, record: dict[str, str], wanted: dict[str, int], *,
                         fresh: bool = False) -> tuple[dict[str, int], bool]:
        """An amend's product quantities as script lines, and whether any went through buckets: a split
        SKU's change goes to the bucket lines the reservation holds (a new line to the owner's first
        bucket) and, when it counts limits in quotas, to the owner's quota line."""
        layouts = self.buckets.layouts(wanted, fresh=fresh)
        if not record or not any(layout.split for layout in layouts.values()):
            return wanted, False
        owner = record.get("u", "")
        current: dict[str, int] = {}
        for part_record in [record] + [self.calls.read(self.ctx.keys.parts[q], token) for q in other_parts(record)]:
            current.update({f[2:]: int(v) for f, v in part_record.items() if f.startswith("l:")})
        out: dict[str, int] = {}
        for sku, qty in wanted.items():
            layout = layouts[sku]
            if not layout.split:
                out[sku] = qty
                continue
            held = {s: n for s, n in current.items() if product_of(s) == sku and not is_quota(s)}
            if layout.quota:  # units held before the split count in the quota already (copied by the split)
                quota = layout.quota_for(owner)
                uncovered = max(sum(held.values()) - current.get(quota, 0), 0)
                out[quota] = max(qty - uncovered, 0)
            if not held:
                if qty:
                    out[layout.first_bucket(owner)] = qty
                continue
            change = qty - sum(held.values())
            if change >= 0:
                fullest = max(held, key=lambda b: held[b])
                out[fullest] = held[fullest] + change
                continue
            for bucket in sorted(held, key=lambda b: held[b]):
                cut = min(-change, held[bucket])
                out[bucket] = held[bucket] - cut
                change += cut
        return out, True

    def _all_lines(self, token: str, record: dict[str, str]) -> tuple[tuple[Line, ...], bool]:
        """Every line of a reservation (its parts' too) and whether every part is still held."""
        others = other_parts(record)
        if not others:
            return self._as_products(_lines_of(record)), True
        pipe = self.ctx.redis.pipeline(transaction=False)
        for q in others:
            queue_read(pipe, self.ctx.keys.parts[q], token)
        replies = pipe.execute()
        records = [record] + [record_of(packed, own) for packed, own in zip(replies[::2], replies[1::2])]
        lines = tuple(sorted((line for r in records for line in _lines_of(r)), key=lambda line: line.sku))
        return self._as_products(lines), all(r.get("st") == "held" for r in records[1:])

    def _as_products(self, lines: tuple[Line, ...]) -> tuple[Line, ...]:
        return self.buckets.product_lines(lines) if any(is_internal(line.sku) for line in lines) else lines

    def _status_now(self, status: Status, record: dict[str, str], parts_held: bool = True) -> Status:
        """The status as Redis's clock has it now: a passed hold expiry or payment deadline shows at once."""
        if status is Status.HELD and (not parts_held or self.ctx.now_ms() >= int(record["exp"])):
            return Status.EXPIRED
        if status is Status.PENDING_PAYMENT and "pdl" in record and self.ctx.now_ms() >= int(record["pdl"]):
            return Status.PAYMENT_EXPIRED
        return status

    def _order_of(self, record: dict[str, str], token: str) -> Order:
        return Order(
            id=record["oid"],
            reservation_id=ids.reservation_id(token),
            user_id=record["u"],
            status=self._status_now(Status(record["st"]), record),
            lines=self._all_lines(token, record)[0],
            created_at=from_ms(int(record.get("co") or record["ct"])),  # type: ignore[arg-type]
            payment_due_at=from_ms(int(record["pdl"])) if "pdl" in record else None,
            extensions=int(record.get("ext", 0)),
        )

    @staticmethod
    def _token(reservation_id: str) -> str:
        token = ids.token_of(reservation_id, "r") if isinstance(reservation_id, str) else None
        if token is None:
            raise ReservationNotFound("No such reservation.", reservation_id=reservation_id)
        return token
