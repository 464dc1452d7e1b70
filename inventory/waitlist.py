"""Waitlists: buyers queue for a sold-out SKU; units that come back are offered to them first, in order.

Units returned by any path (expiry, release, failed or expired payment, amend, lapsed offers) are set
aside for the waiting buyers inside the script that returns them (lua/includes/common.lua), so the
next request cannot take them. offer_waitlist turns them into offers: holds for the buyers at the head
of the queue with a claim window; a claim makes the offer an ordinary reservation (checkout, payment
as usual); an unclaimed offer lapses and passes to the next buyer. The sweeper serves every SKU with a
waitlist each run, and every read or join of an entry serves its SKU first, so a polling buyer sees an
offer as soon as a unit is back. A split SKU's queue lives in bucket 0; its other buckets set their
returns aside for it (inventory/bucket_waitlist.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from inventory import ids
from inventory.context import Context, text
from inventory.bucket_waitlist import NO_MOVE, due
from inventory.buckets import Buckets, Layout
from inventory.buyers import queue_units_of, units_of
from inventory.errors import InvalidArgument, LimitExceeded, NotSoldOut, ProductNotFound, WaitlistEntryNotFound
from inventory.holds import BOUND_FIELD, first_expiry, light_bound
from inventory.keys import SkuKeys
from inventory.models import Reservation, WaitlistEntry, WaitlistSummary, from_ms
from inventory.validation import MAX_QTY, check_sku, check_user

STATES = {"w": "waiting", "o": "offered", "c": "claimed"}


def _entry_fields(raw: Any) -> tuple[str, int, int, str, str] | None:
    """'w|qty|at|seq' or 'o|units|at|seq|token' -> (state, units, at_ms, seq, token)."""
    if raw is None:
        return None
    state, units, at, seq, *rest = text(raw).split("|")
    return state, int(units), int(at), seq, (rest[0] if rest else "")


class Waitlists:
    """Join, read, leave and claim; the sweeper's serve pass."""

    def __init__(self, ctx: Context, reservations: Any) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.reservations = reservations
        self.buckets: Buckets = reservations.buckets

    def join(self, sku: str, user_id: str, qty: int) -> WaitlistEntry:
        """Queue for a sold-out SKU (one entry per user and SKU; joining again answers the entry)."""
        check_sku(sku)
        check_user(user_id)
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= MAX_QTY:
            raise InvalidArgument(f"qty must be from 1 to {MAX_QTY}.", field="qty")
        layout = self.buckets.layout(sku)  # a split newer than the cache is flagged by the next sweep
        if layout.split:
            self._check_split_join(layout, user_id, qty)
        keys, part = self.ctx.keys.sku(sku), self.ctx.keys.of_sku(sku)
        s = self.settings
        reply = self.ctx.run("join_waitlist", [*self._keys(keys), part.sale_switch, part.waitlists],
                             [sku, user_id, qty, s.waitlist_ttl_seconds * 1000, s.waitlist_max_length,
                              s.waitlist_claim_seconds * 1000,
                              self.ctx.keys.token_in(ids.new_token(), self.ctx.keys.partition_of(sku))])
        entry = self._entry_of(sku, user_id, reply)
        if layout.split and self.buckets.waitlist.tend(layout).gathered:  # flagged: returns are set aside
            entry = replace(self.get(sku, user_id), replayed=entry.replayed)  # now; what was there is offered
        return entry

    def _check_split_join(self, layout: Layout, user_id: str, qty: int) -> None:
        """What bucket 0's join script cannot see of a split SKU: units in the other buckets (holds that
        expired there given back first, as the script does on bucket 0), and the buyer's units counted
        in their quota (the claim counts the offer there exactly)."""
        pipe = self.ctx.redis.pipeline(transaction=False)  # one round trip: every bucket, the quota
        for name in layout.buckets:
            pipe.hmget(self.ctx.keys.sku(name).stock, "avail", BOUND_FIELD)
            pipe.zrange(self.ctx.keys.sku(name).holds, 0, 0, withscores=True)
        pipe.hget(self.ctx.keys.sku(layout.sku).stock, "limit")
        queue_units_of(pipe, self.ctx.keys.sku(layout.quota_for(user_id)), user_id)
        replies = pipe.execute()
        limit, already = int(replies[-3] or 0), units_of(user_id, *replies[-2:])
        now_ms = self.ctx.now_ms()
        available = 0
        for name, (avail, bound), first in zip(layout.buckets, replies[0:-3:2], replies[1:-3:2]):
            # holds that expired come back first, as on bucket 0
            if due(first_expiry(first, light_bound(bound)), now_ms):
                avail = self.buckets.transfer(name, "reclaim", NO_MOVE, 1, "")[1]
            available += int(avail or 0)
        if available >= qty:
            raise NotSoldOut("Not sold out: reserve instead of joining the waitlist.", sku=layout.sku,
                             available=available)
        if layout.quota:
            if limit > 0 and already + qty > limit:
                raise LimitExceeded("Per-user limit for this product reached.", sku=layout.sku, limit=limit,
                                    already=already)

    def get(self, sku: str, user_id: str) -> WaitlistEntry:
        """A buyer's entry now (its SKU is served first, so an offer shows as soon as units are back)."""
        check_sku(sku)
        check_user(user_id)
        self.serve(sku)
        keys = self.ctx.keys.sku(sku)
        pipe = self.ctx.redis.pipeline(transaction=False)
        pipe.hget(keys.waitinfo, f"u:{user_id}")
        pipe.zrank(keys.waitlist, user_id)
        pipe.zcard(keys.waitlist)
        raw, rank, length = pipe.execute()
        fields = _entry_fields(raw)
        if fields is None:
            raise WaitlistEntryNotFound("No such waitlist entry.", sku=sku)
        state, units, at, _, token = fields
        status = STATES.get(state, state)
        if status in ("waiting", "offered") and self.ctx.now_ms() >= at:
            status = "expired" if status == "waiting" else "lapsed"
        return WaitlistEntry(sku=sku, user_id=user_id, status=status, units=units,
                             position=(int(rank) + 1) if rank is not None and status == "waiting" else 0,
                             length=int(length), until=from_ms(at),  # type: ignore[arg-type]
                             reservation_id=ids.reservation_id(token) if status == "claimed" else None)

    def leave(self, sku: str, user_id: str) -> str:
        """Leave the queue (an open offer's units pass to the next buyer); returns the state left."""
        check_sku(sku)
        check_user(user_id)
        reply = self.ctx.run("leave_waitlist", [*self._keys(self.ctx.keys.sku(sku)),
                                                self.ctx.keys.of_sku(sku).sale_switch],
                             [user_id, self.settings.waitlist_claim_seconds * 1000])
        return text(reply[1])

    def claim(self, sku: str, user_id: str, *, ttl_seconds: int | None = None) -> Reservation:
        """Turn this buyer's offer into an open reservation (then check out and pay as usual)."""
        check_sku(sku)
        check_user(user_id)
        ttl = self.settings.hold_ttl_seconds if ttl_seconds is None else ttl_seconds
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= self.settings.max_hold_ttl_seconds:
            raise InvalidArgument(f"ttl_seconds must be from 1 to {self.settings.max_hold_ttl_seconds}.",
                                  field="ttl_seconds")
        keys, part = self.ctx.keys.sku(sku), self.ctx.keys.of_sku(sku)
        fields = _entry_fields(self.ctx.redis.hget(keys.waitinfo, f"u:{user_id}"))
        token = fields[4] if fields and fields[0] in ("o", "c") else ""
        if not token:
            raise WaitlistEntryNotFound("No offer for this buyer on this waitlist.", sku=sku)
        self.ctx.run("claim_offer", [part.reservation(token), part.expiries, part.dirty, part.sale_switch,
                                     keys.stock, keys.holds, keys.buyers, keys.waitinfo, keys.index],
                     [user_id, token, sku, ttl * 1000, self.settings.record_retention_seconds * 1000])
        reservation_id = ids.reservation_id(token)
        try:
            self.reservations.count_in_quota(token, self.reservations.calls.read(part, token))
        except LimitExceeded:
            self.reservations.release(reservation_id, user_id=user_id)  # the units pass to the next buyer
            raise
        return self.reservations.get(reservation_id, user_id=user_id)

    def serve(self, sku: str) -> int:
        """Offer set-aside units to the head of the SKU's queue; drop expired entries. Units offered.
        A split SKU first gathers what its other buckets set aside (inventory/bucket_waitlist.py)."""
        layout = self.buckets.layout(sku)
        if layout.split:
            self.buckets.waitlist.tend(layout)
        keys = self.ctx.keys.sku(sku)
        part = self.ctx.keys.of_sku(sku)
        reply = self.ctx.run("offer_waitlist", [*self._keys(keys), part.sale_switch, part.waitlists],
                             [self.settings.waitlist_claim_seconds * 1000, sku])
        return int(reply[1])

    def serve_all(self) -> int:
        """The sweeper's pass: serve every SKU with a waitlist; forget SKUs whose queue emptied."""
        offered = 0
        for part in self.ctx.keys.parts:
            for sku in sorted(text(s) for s in self.ctx.redis.smembers(part.waitlists)):
                try:
                    offered += self.serve(sku)
                except ProductNotFound:
                    self.ctx.redis.srem(part.waitlists, sku)
        return offered

    def summary(self, sku: str, *, limit: int = 20) -> WaitlistSummary:
        """How many wait, for how many units, what is set aside, and the head of the queue."""
        check_sku(sku)
        self.serve(sku)
        keys = self.ctx.keys.sku(sku)
        waiting, wanted, set_aside = self._counters([sku])[sku]
        head = [text(u) for u in self.ctx.redis.zrange(keys.waitlist, 0, max(limit, 1) - 1)]
        return WaitlistSummary(sku=sku, waiting=waiting, units_wanted=wanted, units_set_aside=set_aside,
                               head=tuple(self.get(sku, user) for user in head))

    def counts(self, skus: list[str]) -> dict[str, tuple[int, int]]:
        """(buyers waiting, units set aside) of each SKU."""
        return {sku: (waiting, set_aside) for sku, (waiting, _, set_aside) in self._counters(skus).items()}

    def _counters(self, skus: list[str]) -> dict[str, tuple[int, int, int]]:
        """(buyers waiting, units they want, units set aside) of each SKU, one pipelined read; a split SKU's
        set-aside units summed over its buckets (a flagged bucket keeps what came back to it until the
        sweeper moves it to bucket 0)."""
        layouts = self.buckets.layouts(skus)
        others = [(sku, bucket) for sku in skus if sku in layouts for bucket in layouts[sku].buckets[1:]]
        pipe = self.ctx.redis.pipeline(transaction=False)
        for sku in skus:
            pipe.hmget(self.ctx.keys.sku(sku).stock, "wn", "wq", "owe")
        for _, bucket in others:
            pipe.hget(self.ctx.keys.sku(bucket).stock, "owe")
        replies = pipe.execute()
        counts = {sku: (int(wn or 0), int(wq or 0), int(owe or 0)) for sku, (wn, wq, owe) in zip(skus, replies)}
        for (sku, _), owe in zip(others, replies[len(skus):]):
            waiting, wanted, set_aside = counts[sku]
            counts[sku] = (waiting, wanted, set_aside + int(owe or 0))
        return counts

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _keys(keys: SkuKeys) -> list[str]:
        return [keys.stock, keys.holds, keys.buyers, keys.waitlist, keys.waitinfo]

    def _entry_of(self, sku: str, user_id: str, reply: list[Any]) -> WaitlistEntry:
        token = text(reply[6])
        status = text(reply[1])
        return WaitlistEntry(sku=sku, user_id=user_id, status=status, units=int(reply[5]),
                             position=int(reply[2]), length=int(reply[3]),
                             until=from_ms(int(reply[4])),  # type: ignore[arg-type]
                             reservation_id=ids.reservation_id(token) if status == "claimed" else None,
                             replayed=int(reply[0]) == 1)
