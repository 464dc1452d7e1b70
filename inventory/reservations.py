"""The reservation lifecycle: reserve, amend, release, checkout, payment results, expiry."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping, Sequence

from inventory import ids
from inventory.context import Context, decode_hash, text
from inventory.keys import Partition
from inventory.errors import (
    InvalidArgument,
    LinesSpanPartitions,
    OrderNotFound,
    RateLimited,
    ReservationClosed,
    ReservationNotFound,
    StaleRead,
)
from inventory.models import (
    Line, Order, PaymentOutcome, RateLimit, Reservation, Status, SweepResult, from_ms,
)
from inventory.validation import check_lines, check_request_id, check_user

_STALE_RETRIES = 5
PAYMENT_RESULTS = ("paid", "failed")


def _fingerprint(user_id: str, lines: list[tuple[str, int]], ttl_ms: int) -> str:
    body = json.dumps([user_id, sorted(lines), ttl_ms], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def _lines_of(record: dict[str, str]) -> tuple[Line, ...]:
    return tuple(
        Line(sku=field[2:], qty=int(value), unit_price=int(record.get(f"p:{field[2:]}", 0)))
        for field, value in sorted(record.items())
        if field.startswith("l:")
    )


class Reservations:
    """Typed operations over the reservation scripts."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings

    # -- writes -----------------------------------------------------------------------------

    def reserve(
        self,
        user_id: str,
        items: Mapping[str, int] | Iterable[tuple[str, int]],
        *,
        ttl_seconds: int | None = None,
        idempotency_key: str | None = None,
        rate_limits: Sequence[RateLimit] = (),
    ) -> Reservation:
        """Hold stock for a user, all lines or none; a repeated idempotency key replays the original.

        Each of `rate_limits` counts this call; if one is over its limit, RateLimited and nothing held.
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
        part = self._partition_of([sku for sku, _ in lines])
        base = ids.token_for_key(user_id, idempotency_key) if idempotency_key else ids.new_token()
        token = self.ctx.keys.token_in(base, part.index)
        ttl_ms = ttl * 1000
        keys = [part.reservation(token), part.expiries, part.dirty, part.sale_switch]
        keys += self.ctx.line_keys([sku for sku, _ in lines])
        if self.ctx.cluster and rate_limits:  # buckets live in other slots: counted first, one call each
            for j, bucket in enumerate(rate_limits, 1):
                self._count_request(bucket, j)
            rate_limits = ()
        keys += [bucket.key for bucket in rate_limits]
        args: list[Any] = [token, user_id, _fingerprint(user_id, lines, ttl_ms), ttl_ms,
                           self.settings.record_retention_seconds * 1000, len(rate_limits)]
        for sku, qty in lines:
            args += [sku, qty]
        for bucket in rate_limits:
            args += [bucket.limit, bucket.window_seconds]
        try:
            reply = self.ctx.run("reserve", keys, args)
        except RateLimited as error:
            bucket = rate_limits[int(error.details["bucket"]) - 1]
            raise RateLimited(error.message, limit=bucket.label or str(bucket.limit),
                              retry_after_ms=int(error.details["retry_after_ms"])) from None
        if int(reply[0]) == 1:
            return replace(self.get(ids.reservation_id(token)), replayed=True)
        prices = [int(p) for p in reply[3:]]
        return Reservation(
            id=ids.reservation_id(token),
            user_id=user_id,
            status=Status.HELD,
            lines=tuple(Line(sku, qty, price) for (sku, qty), price in zip(lines, prices)),
            created_at=from_ms(int(reply[2])),  # type: ignore[arg-type]
            expires_at=from_ms(int(reply[1])),  # type: ignore[arg-type]
        )

    def amend(self, reservation_id: str, changes: Mapping[str, int] | Iterable[tuple[str, int]], *,
              user_id: str | None = None) -> Reservation:
        """Set new quantities for some lines of an open reservation (0 removes a line)."""
        token = self._token(reservation_id)
        wanted = dict(check_lines(changes, allow_zero=True))
        part = self.ctx.keys.of_token(token)
        self._partition_of(list(wanted), part)

        def amend_call(current: list[str], _owner: str) -> list[Any]:
            # Every current line is named too, so the script can check that all its holds are still there.
            skus = sorted(set(current) | set(wanted))
            args: list[Any] = [token, user_id or ""]
            for sku in skus:
                args += [sku, wanted.get(sku, "")]
            return self.ctx.run("amend", [part.reservation(token), part.expiries, part.dirty, part.sale_switch]
                                + self.ctx.line_keys(skus), args)

        self._on_lines(token, amend_call)
        return self.get(reservation_id, user_id=user_id)

    def release(self, reservation_id: str, *, user_id: str | None = None) -> Reservation:
        """Cancel a hold: its stock returns exactly once; releasing again is harmless."""
        token = self._token(reservation_id)
        self._on_lines(token, lambda skus, _: self._release_call(token, skus, user_id or "", "cancel"))
        return self.get(reservation_id, user_id=user_id)

    def checkout(self, reservation_id: str, *, user_id: str | None = None, request_id: str = "") -> Order:
        """Turn an open hold into an order awaiting payment; repeating returns the same order."""
        check_request_id(request_id)
        token = self._token(reservation_id)
        part = self.ctx.keys.of_token(token)
        reply = self._on_lines(token, lambda skus, owner: self.ctx.run(
            "checkout",
            [part.reservation(token), part.expiries, part.dirty, part.outbox,
             part.user_orders(owner)] + self.ctx.line_keys(skus),
            [token, user_id or "", ids.order_id(token), self.settings.order_retention_seconds * 1000, *skus,
             request_id],
        ))
        order = self.get_order(text(reply[1]))
        return replace(order, replayed=int(reply[0]) == 1)

    def record_payment(self, *, event_id: str, result: str, reservation_id: str | None = None,
                       order_id: str | None = None, request_id: str = "") -> PaymentOutcome:
        """Apply a payment provider's 'paid' / 'failed' result once per event id."""
        check_request_id(request_id)
        if result not in PAYMENT_RESULTS:
            raise InvalidArgument("status must be 'paid' or 'failed'.", field="status")
        if not event_id or len(event_id) > 255:
            raise InvalidArgument("event_id must be 1-255 characters.", field="event_id")
        if (reservation_id is None) == (order_id is None):
            raise InvalidArgument("Give exactly one of order_id and reservation_id.", field="order_id")
        token = ids.token_of(order_id, "o") if order_id else ids.token_of(reservation_id or "", "r")
        if token is None:
            raise (OrderNotFound if order_id else ReservationNotFound)("No such order or reservation.")
        part = self.ctx.keys.of_token(token)
        try:
            reply = self._on_lines(token, lambda skus, owner: self.ctx.run(
                "record_payment",
                [part.reservation(token), part.expiries, part.dirty, part.outbox,
                 part.user_orders(owner)] + self.ctx.line_keys(skus),
                [token, event_id, result, ids.order_id(token), self.settings.order_retention_seconds * 1000,
                 *skus, request_id],
            ))
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

    def expire_due(self, *, batch_size: int | None = None, max_batches: int = 50) -> SweepResult:
        """Release reservations whose expiry has passed, in bounded batches."""
        size = batch_size or self.settings.sweep_batch_size
        expired = returned = batches = 0
        now = self.ctx.now_ms()
        for part in self.ctx.keys.parts:
            for _ in range(max_batches):
                batches += 1
                tokens = [text(t) for t in self.ctx.redis.zrangebyscore(part.expiries, "-inf", now, start=0, num=size)]
                for token in tokens:
                    try:
                        reply = self._on_lines(token, lambda skus, _, t=token: self._release_call(t, skus, "", "expire"))
                    except (ReservationNotFound, ReservationClosed, StaleRead):
                        continue  # gone, checked out or paid since it was listed: nothing to expire
                    if int(reply[0]) == 0:
                        expired += 1
                        returned += int(reply[2])
                if len(tokens) < size:
                    break
        return SweepResult(expired=expired, units_returned=returned, batches=batches)

    # -- reads ------------------------------------------------------------------------------

    def get(self, reservation_id: str, *, user_id: str | None = None) -> Reservation:
        """A reservation as it stands now; another user's reservation is 'not found'."""
        token = self._token(reservation_id)
        record = decode_hash(self.ctx.redis.hgetall(self.ctx.keys.reservation(token)))
        if not record or (user_id is not None and record["u"] != user_id):
            raise ReservationNotFound("No such reservation.", reservation_id=reservation_id)
        status = Status(record["st"])
        if status is Status.HELD and self.ctx.now_ms() >= int(record["exp"]):
            status = Status.EXPIRED
        return Reservation(
            id=reservation_id,
            user_id=record["u"],
            status=status,
            lines=_lines_of(record),
            created_at=from_ms(int(record["ct"])),  # type: ignore[arg-type]
            expires_at=from_ms(int(record["exp"])),  # type: ignore[arg-type]
            order_id=record.get("oid"),
        )

    def get_order(self, order_id: str, *, user_id: str | None = None) -> Order:
        """An order (checked-out reservation) with its payment status."""
        token = ids.token_of(order_id, "o")
        record = decode_hash(self.ctx.redis.hgetall(self.ctx.keys.reservation(token))) if token else {}
        if not record or record.get("oid") != order_id or (user_id is not None and record["u"] != user_id):
            raise OrderNotFound("No such order.", order_id=order_id)
        return self._order_of(record, token)  # type: ignore[arg-type]

    def list_orders(self, user_id: str, *, limit: int = 50) -> list[Order]:
        """A user's most recent orders, newest first."""
        check_user(user_id)
        pipe = self.ctx.redis.pipeline(transaction=False)
        for part in self.ctx.keys.parts:  # each partition indexes the orders it holds
            pipe.zrevrange(part.user_orders(user_id), 0, limit - 1, withscores=True)
        newest = sorted((item for found in pipe.execute() for item in found), key=lambda i: -i[1])[:limit]
        order_ids = [text(order) for order, _ in newest]
        pipe = self.ctx.redis.pipeline(transaction=False)
        tokens = [ids.token_of(o, "o") for o in order_ids]
        for token in tokens:
            pipe.hgetall(self.ctx.keys.reservation(token or ""))
        return [self._order_of(decode_hash(raw), token)  # type: ignore[arg-type]
                for raw, token in zip(pipe.execute(), tokens) if raw]

    # -- helpers ----------------------------------------------------------------------------

    def _order_of(self, record: dict[str, str], token: str) -> Order:
        return Order(
            id=record["oid"],
            reservation_id=ids.reservation_id(token),
            user_id=record["u"],
            status=Status(record["st"]),
            lines=_lines_of(record),
            created_at=from_ms(int(record.get("co") or record["ct"])),  # type: ignore[arg-type]
        )

    @staticmethod
    def _token(reservation_id: str) -> str:
        token = ids.token_of(reservation_id, "r") if isinstance(reservation_id, str) else None
        if token is None:
            raise ReservationNotFound("No such reservation.", reservation_id=reservation_id)
        return token

    def _on_lines(self, token: str, call: Callable[[list[str], str], list[Any]]) -> list[Any]:
        """Run a script that needs the reservation's SKUs (and owner) in KEYS; retry if lines changed meanwhile.

        One read gives both; a missing record passes no SKUs and owner '' and the script answers 'not found'.
        """
        for _ in range(_STALE_RETRIES):
            record = decode_hash(self.ctx.redis.hgetall(self.ctx.keys.reservation(token)))
            skus = sorted(field[2:] for field in record if field.startswith("l:"))
            try:
                return call(skus, record.get("u", ""))
            except StaleRead:
                continue
        raise StaleRead("The reservation kept changing; try again.")

    def _count_request(self, bucket: RateLimit, j: int) -> None:
        try:
            self.ctx.run("count_request", [bucket.key], [bucket.limit, bucket.window_seconds, j])
        except RateLimited as error:
            raise RateLimited(error.message, limit=bucket.label or str(bucket.limit),
                              retry_after_ms=int(error.details["retry_after_ms"])) from None

    def _partition_of(self, skus: Sequence[str], within: Partition | None = None) -> Partition:
        """The one partition every SKU lives in; a reservation's lines share its partition's slot."""
        parts = {self.ctx.keys.partition_of(sku) for sku in skus}
        if within is not None:
            parts.add(within.index)
        if len(parts) > 1:
            raise LinesSpanPartitions(
                "These SKUs live in different partitions of the key space and cannot share one reservation; "
                "reserve them separately.", skus=sorted(skus))
        return within or self.ctx.keys.parts[parts.pop()]

    def _release_call(self, token: str, skus: list[str], user_id: str, mode: str) -> list[Any]:
        part = self.ctx.keys.of_token(token)
        return self.ctx.run(
            "release",
            [part.reservation(token), part.expiries, part.dirty] + self.ctx.line_keys(skus),
            [token, user_id, mode, self.settings.record_retention_seconds * 1000, *skus],
        )
