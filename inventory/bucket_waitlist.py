"""A split SKU's waitlist: its queue lives in bucket 0; the other buckets set their returns aside for it.

- joining (bucket 0's script, exactly as on an unsplit SKU) raises bucket 0's waitlist epoch 'wle'; the
  join that forms the queue (nobody waited) also records it as 'wlf'. The joiner's next pass then flags
  every other bucket below 'wlf' with it (transfer_stock 'flag': 'wl' = max(wl, epoch)), which sets aside
  that bucket's available units: one flagging per queue formed, not per join. From then on every unit that comes back to the bucket
  (expiry, release, failed payment, amend, a move in, an admin add) is set aside in the same script,
  so no request takes a unit a waiting buyer is owed, whichever bucket it came back to.
- while buyers wait, each pass also has the other buckets give back their holds whose expiry passed
  (a bucket no request touches would keep them until the expiry sweep), so their units reach the queue
  at the next entry read (the bucket's earliest hold against Redis's clock says which to ask).
- `gather` moves what the other buckets set aside into bucket 0 (transfer_stock 'owed', then 'in',
  which sets them aside for the queue there); offer_waitlist then offers them in join order.
- once nobody waits, the flags up to the 'wle' read together with that fact are lowered, and the
  set-aside units become available again. A join after that read forms a new queue with a higher
  'wlf', so its flags stay whichever of the two writes lands first.
The sweeper runs `tend` for every split SKU each pass (Buckets.rebalance), and so does every read of an
entry and every join: a joiner killed before flagging is flagged by the next pass, an interrupted move is
resumed. Each pass reads everything it decides on in one pipelined round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from inventory.context import text
from inventory.holds import BOUND_FIELD, first_expiry, light_bound

if TYPE_CHECKING:
    from inventory.buckets import Buckets, Layout

NO_MOVE = "-"  # the move id flag, unflag and reclaim take (they journal nothing)


def due(expiry: float | None, now_ms: int) -> bool:
    """Whether a bucket whose earliest hold expires at `expiry` has holds to give back now."""
    return expiry is not None and expiry <= now_ms


@dataclass(frozen=True)
class Tended:
    """What one pass found and did: buyers waiting in bucket 0's queue, units moved there."""

    waiting: int
    gathered: int


@dataclass(frozen=True)
class _Bucket:
    name: str
    flag: int  # 'wl': the epoch it was flagged with (0: not flagged)
    owed: int  # units it set aside for the queue
    first_expiry_ms: float | None  # its earliest hold's expiry (None: no hold but the waitlist pool)


class BucketWaitlist:
    """Flags, gathering and lowering for one process (stateless but for its Buckets)."""

    def __init__(self, buckets: "Buckets") -> None:
        self.buckets = buckets
        self.ctx = buckets.ctx
        self.keys = buckets.keys

    def tend(self, layout: "Layout") -> Tended:
        """While buyers wait: flag, reclaim due holds and gather; once nobody does: lower the flags."""
        waiting, epoch, formed, others = self._read(layout)
        if not waiting:
            self._lower(others, epoch)
            return Tended(0, 0)
        now_ms = self.ctx.now_ms() if any(b.first_expiry_ms is not None for b in others) else 0
        gathered = 0
        for bucket in others:
            owed = bucket.owed
            if formed > 0 and (bucket.flag < formed or due(bucket.first_expiry_ms, now_ms)):
                owed = self._owed_after_flag(bucket.name, formed)
            if owed > 0:
                gathered += self.buckets.move(bucket.name, layout.sku, owed, mode="owed")
        return Tended(waiting, gathered)

    def lower(self, layout: "Layout", epoch: int) -> int:
        """Drop the flags raised up to `epoch` (read when nobody waited); units made available again."""
        return self._lower(self._read(layout)[3], epoch)

    def _owed_after_flag(self, name: str, epoch: int) -> int:
        return int(self.buckets.transfer(name, "flag", NO_MOVE, epoch, "")[1])

    def _lower(self, others: list[_Bucket], epoch: int) -> int:
        freed = 0
        for bucket in others:
            if 0 < bucket.flag <= epoch:
                reply = self.buckets.transfer(bucket.name, "unflag", NO_MOVE, epoch, "")
                freed += int(reply[1]) if int(reply[0]) == 0 else 0
        return freed

    def _read(self, layout: "Layout") -> tuple[int, int, int, list[_Bucket]]:
        """(buyers waiting, epoch, epoch the queue formed at) of bucket 0 and the state of every other
        bucket, one round trip."""
        names = layout.buckets[1:]
        pipe = self.ctx.redis.pipeline(transaction=False)
        pipe.hmget(self.keys.sku(layout.sku).stock, "wn", "wle", "wlf")
        for name in names:
            keys = self.keys.sku(name)
            pipe.hmget(keys.stock, "wl", "owe", BOUND_FIELD)
            pipe.zrange(keys.holds, 0, 0, withscores=True)
        replies = pipe.execute()
        waiting, epoch, formed = (int(text(v)) if v is not None else 0 for v in replies[0])
        others = []
        for name, (flag, owed, bound), first in zip(names, replies[1::2], replies[2::2]):
            others.append(_Bucket(name, int(flag or 0), int(owed or 0), first_expiry(first, light_bound(bound))))
        return waiting, epoch, formed, others
