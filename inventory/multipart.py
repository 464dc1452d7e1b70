"""Reservations whose lines live in several partitions (several cluster slots), all or nothing.

The token names the home partition; the home record lists the other parts ('parts'). Each part is an
ordinary reservation record in its own partition, under the same token, with its own holds and expiry
(the same instant as the home's), so a part left behind by a crash expires by itself.

  reserve   the other parts first, the home last: the home's record is the commit point. A part that
            fails releases the parts this call took; a crash leaves only holds that expire.
  checkout  pin every other part (it can no longer expire or be reclaimed), check out the home (the
            decision: it refuses if a sweeper gave up on this attempt meanwhile), then check out the
            parts. A sweeper that finds a pinned part past its window asks the home: committed ->
            check the part out; not -> bump the home's abort count and unpin the part.
  payment,  applied to the home, then every part is brought to the home's state (converge); the
  release   token waits in the home partition's 'pending' set until that is done, so a crash in
            between is finished by the sweeper.
  amend     increases and new parts first (a refusal undoes what was already done; a new part is
            attached to the home only once it holds its stock), then decreases, which cannot be refused.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from inventory.context import Context, text
from inventory.errors import (
    IdempotencyConflict,
    InvalidArgument,
    InventoryError,
    ReservationClosed,
    ReservationExpired,
    ReservationNotFound,
    StaleRead,
)
from inventory.keys import Partition
from inventory.models import RateLimit
from inventory.part_calls import PartCalls, fingerprint

log = logging.getLogger(__name__)

CONVERGE_AFTER_MS = 5_000  # the request that marked a token pending normally finishes well before this
CLOSED = ("released", "expired", "payment_failed", "payment_expired", "refund_required")


def other_parts(record: dict[str, str]) -> list[int]:
    """Partition numbers of a home record's other parts ([] for a single-part reservation)."""
    return [int(p) for p in record.get("parts", "").split(",") if p]


class MultiPart:
    """The operations on reservations with parts in several partitions."""

    def __init__(self, ctx: Context, calls: PartCalls) -> None:
        self.ctx = ctx
        self.keys = ctx.keys
        self.calls = calls

    # -- reserve / amend ----------------------------------------------------------------------

    def reserve(self, token: str, user_id: str, fp: str, ttl_ms: int, by_part: dict[int, list[tuple[str, int]]],
                rate_limits: Sequence[RateLimit], *, routed: dict[str, str] | None = None
                ) -> tuple[list[Any], dict[str, int]]:
        """Reserve every part, home last; returns the home's reply and the unit price of every line."""
        home = self.keys.of_token(token)
        if rate_limits:
            self.calls.count_requests(rate_limits)
        others = sorted(q for q in by_part if q != home.index)
        taken: list[int] = []
        prices: dict[str, int] = {}
        try:
            for q in others:
                reply = self.calls.reserve(self.keys.parts[q], token, user_id, fp, ttl_ms, by_part[q], routed=routed)
                if int(reply[0]) == 0:
                    taken.append(q)
                    prices.update(zip((sku for sku, _ in by_part[q]), (int(p) for p in reply[3:])))
            reply = self.calls.reserve(home, token, user_id, fp, ttl_ms, by_part[home.index],
                                       others=",".join(map(str, others)), routed=routed)
        except InventoryError:
            for q in taken:  # compensation: what this call held goes back now, not at expiry
                self.calls.release(self.keys.parts[q], token, user_id, "cancel")
            raise
        prices.update(zip((sku for sku, _ in by_part[home.index]), (int(p) for p in reply[3:])))
        return reply, prices

    def amend(self, token: str, record: dict[str, str], wanted: dict[str, int], user_id: str, *,
              routed: bool = False) -> None:
        """Change quantities across the parts: increases and new parts first (undone on refusal), then
        decreases, which cannot be refused."""
        home = self.keys.of_token(token)
        if not record or (user_id and record.get("u") != user_id):
            raise ReservationNotFound("No such reservation.")
        present = [home.index, *other_parts(record)]
        current: dict[str, int] = {}
        for q in present:
            record_q = record if q == home.index else self.calls.read(self.keys.parts[q], token)
            current.update({f[2:]: int(v) for f, v in record_q.items() if f.startswith("l:")})
        grow: dict[int, dict[str, int]] = {}
        shrink: dict[int, dict[str, int]] = {}
        for sku, qty in wanted.items():
            if qty == current.get(sku, 0):
                continue
            target = grow if qty > current.get(sku, 0) else shrink
            target.setdefault(self.keys.partition_of(sku), {})[sku] = qty
        if not any(wanted.get(sku, qty) > 0 for sku, qty in {**current, **wanted}.items()):
            # refused before any part changes, as a one-partition amend is (the script's 'empty')
            raise InvalidArgument("An amendment cannot remove every line; release the reservation instead.",
                                  argument="empty")
        new_parts = sorted(q for q in grow if q not in present)
        done: list[tuple[int, dict[str, int]]] = []
        created: list[int] = []
        try:
            for q, changes in sorted(grow.items()):
                if q in new_parts:
                    self._reserve_new_part(token, record, q, changes)
                    created.append(q)
                else:
                    self.calls.amend(self.keys.parts[q], token, user_id, changes, routed=routed)
                    done.append((q, {sku: current.get(sku, 0) for sku in changes}))
            if created:
                self.calls.attach_parts(home, token, user_id, sorted(set(present[1:]) | set(created)))
        except InventoryError:
            for q in created:
                self.calls.release(self.keys.parts[q], token, "", "cancel")
            for q, before in done:
                self.calls.amend(self.keys.parts[q], token, user_id, before, routed=routed)
            raise
        emptied = [q for q, changes in shrink.items() if q != home.index and self._empties(q, changes, current)]
        if emptied:  # detached first: a crash before the release leaves a part that expires by itself
            self.calls.attach_parts(home, token, user_id,
                                    sorted((set(present[1:]) | set(created)) - set(emptied)))
        for q, changes in sorted(shrink.items()):
            if q in emptied:
                self.calls.release(self.keys.parts[q], token, "", "cancel")
            else:
                self.calls.amend(self.keys.parts[q], token, user_id, changes, routed=routed)

    def _empties(self, q: int, changes: dict[str, int], current: dict[str, int]) -> bool:
        """Whether these changes take every line of partition q's part to 0."""
        lines = [sku for sku in current if self.keys.partition_of(sku) == q]
        return all(changes.get(sku, current[sku]) == 0 for sku in lines)

    def _reserve_new_part(self, token: str, record: dict[str, str], q: int, lines: dict[str, int]) -> None:
        """A part in a partition the reservation had no line in, expiring with the home."""
        remaining = int(record["exp"]) - self.ctx.now_ms()
        if remaining <= 0:
            raise ReservationExpired("The reservation has expired.")
        items = sorted(lines.items())
        reply = self.calls.reserve(self.keys.parts[q], token, record["u"], fingerprint(record["u"], items, 0),
                                   remaining, items, routed={sku: "2" for sku, _ in items})  # amend routed them
        if int(reply[0]) != 0:
            raise ReservationClosed("The reservation changed meanwhile; try again.", status="changed")

    # -- checkout / payment / release -------------------------------------------------------------

    def checkout(self, token: str, record: dict[str, str], user_id: str, order_id: str, request_id: str) -> list[Any]:
        """Pin the other parts, check out the home (the decision), then the parts."""
        home = self.keys.of_token(token)
        if record.get("oid") or record.get("st") != "held":
            return self.calls.checkout(home, token, user_id, order_id, request_id)  # replay or refusal
        if user_id and record.get("u") != user_id:
            raise ReservationNotFound("No such reservation.")
        generation = record.get("abort", "0")
        self.mark_pending(home, token)
        try:
            for q in other_parts(record):
                self.calls.pin(self.keys.parts[q], token, "pin")
            reply = self.calls.checkout(home, token, user_id, order_id, request_id, generation)
        except (ReservationExpired, ReservationClosed, ReservationNotFound):
            # Pins are never dropped here: a concurrent checkout of the same reservation may rely on them
            # (the sweeper gives up stale pins after their window, through the home). A home that a
            # concurrent checkout committed stays checked out (closing it is refused); the parts follow.
            self._close_home(home, token)
            self.converge(token)
            # The home's own answer: the order of a checkout that committed it, or its refusal (expired,
            # or released)
            reply = self.calls.checkout(home, token, user_id, order_id, request_id)
            if int(reply[0]) == 1:
                return reply
            raise
        except StaleRead:
            raise StaleRead("The checkout was interrupted; try again.") from None
        self.converge(token)
        return reply

    def record_payment(self, token: str, record: dict[str, str], event_id: str, result: str, order_id: str,
                       request_id: str) -> list[Any]:
        """A payment result on the home, then the parts follow."""
        home = self.keys.of_token(token)
        if record.get("st") == "held" and result == "paid":
            try:  # paid before checkout: check out every part first, as one order
                self.checkout(token, record, "", order_id, request_id)
            except (ReservationExpired, ReservationClosed, ReservationNotFound, StaleRead):
                pass  # the home decides below: a payment for stock that went back is refund_required
        self.mark_pending(home, token)
        reply = self.calls.record_payment(home, token, event_id, result, order_id, request_id)
        self.converge(token)
        return reply

    def release(self, token: str, user_id: str) -> list[Any]:
        """Cancel at the home, then the parts follow."""
        home = self.keys.of_token(token)
        self.mark_pending(home, token)
        reply = self.calls.release(home, token, user_id, "cancel")
        self.converge(token)
        return reply

    # -- following the home ------------------------------------------------------------------------

    def converge(self, token: str) -> None:
        """Bring every part to its home's state (idempotent), then clear the token's pending mark."""
        home = self.keys.of_token(token)
        record = self.calls.read(home, token)
        if not record or not other_parts(record):
            self.ctx.redis.zrem(home.pending, token)
            return
        status, committed, order_id = record["st"], "co" in record, record.get("oid", "")
        payment_expired = "pexp" in record  # the home's payment deadline passed: parts have none of their own
        if status == "held":  # nothing decided yet: pinned parts are resolved by the sweeper (resolve_pinned)
            self.ctx.redis.zrem(home.pending, token)
            return
        paid = sorted(f[3:] for f, v in record.items() if f.startswith("ev:") and v == "paid")
        failed = sorted(f[3:] for f, v in record.items() if f.startswith("ev:") and v == "failed")
        for q in other_parts(record):
            self._follow(self.keys.parts[q], token, status, committed, order_id, paid, failed, payment_expired)
        self.ctx.redis.zrem(home.pending, token)

    def _follow(self, part: Partition, token: str, status: str, committed: bool, order_id: str,
                paid: list[str], failed: list[str], payment_expired: bool = False) -> None:
        current = self.calls.read(part, token)
        if not current:
            return  # never created (reserve stopped before it) or past retention
        steps: list[tuple[str, str]] = []
        if committed:
            if current["st"] == "held":
                self.calls.checkout(part, token, "", order_id, "")
            if payment_expired:
                self.calls.record_payment(part, token, "", "expire", order_id, "")
            if status in ("payment_failed", "refund_required") and failed:
                steps.append((failed[0], "failed"))
            if status in ("paid", "refund_required") and paid:
                steps.append((paid[-1], "paid"))
        elif status in CLOSED:
            if current["st"] == "held":
                self.calls.release(part, token, "", "cancel")
            if status == "refund_required" and paid:
                steps.append((paid[-1], "paid"))
        for event_id, result in steps:
            try:
                self.calls.record_payment(part, token, event_id, result, order_id, "")
            except IdempotencyConflict:
                pass  # already applied with the home's other result: the home's state stands

    def resolve_pinned(self, part: Partition, token: str) -> None:
        """A pinned part past its window: commit it if its home checked out, else abort and unpin it."""
        home = self.keys.of_token(token)
        try:
            reply = self.calls.abort_checkout(home, token)
        except ReservationNotFound:
            self.calls.release(part, token, "", "cancel")  # no home ever: the reserve never finished
            return
        if part.index not in other_parts(self.calls.read(home, token)):
            # detached by an amend that stopped before releasing it: no checkout can take it any more
            self.calls.release(part, token, "", "cancel")
            return
        if int(reply[0]) == 1 or text(reply[1]) in CLOSED:
            self.converge(token)  # committed: the part is checked out; closed: it is released now
        else:
            self.calls.pin(part, token, "unpin")
            self.calls.release(part, token, "", "expire")  # back to its own expiry: released now if due

    def converge_pending(self, part: Partition, now_ms: int, batch: int = 100) -> int:
        """Finish multi-part operations a crashed process left half done in this partition."""
        tokens = [text(t) for t in self.ctx.redis.zrangebyscore(
            part.pending, "-inf", now_ms - CONVERGE_AFTER_MS, start=0, num=batch)]
        for token in tokens:
            try:
                self.converge(token)
            except InventoryError as error:  # stays pending and is retried; one token never stops the sweep
                log.error("multi-part reservation token=%s could not follow its home: %s", token, error)
        return len(tokens)

    # -- helpers -------------------------------------------------------------------------------------

    def mark_pending(self, home: Partition, token: str) -> None:
        """Note that the token's parts must follow its home (the sweeper finishes it after a crash)."""
        self.ctx.redis.zadd(home.pending, {token: self.ctx.now_ms()})

    def _close_home(self, home: Partition, token: str) -> None:
        """A part could not be pinned (expired or released): the reservation as a whole is over."""
        try:
            reply = self.calls.release(home, token, "", "expire")
            if int(reply[0]) == 2:  # not due by the clock, but a part is gone: it cannot be checked out
                self.calls.release(home, token, "", "cancel")
        except InventoryError:
            pass  # already closed or checked out: converge follows what the home says
