"""A split SKU's waitlist: its queue lives in bucket 0; the other buckets set their returns aside for it.

- joining (bucket 0's script, exactly as on an unsplit SKU) raises bucket 0's waitlist epoch 'wle';
  the joiner then flags every other bucket with it (transfer_stock 'flag': 'wl' = max(wl, epoch)), which
  sets aside that bucket's available units. From then on every unit that comes back to the bucket
  (expiry, release, failed payment, amend, a move in, an admin add) is set aside in the same script,
  so no request takes a unit a waiting buyer is owed, whichever bucket it came back to.
- `gather` moves what the other buckets set aside into bucket 0 (transfer_stock 'owed', then 'in',
  which sets them aside for the queue there); offer_waitlist then offers them in join order.
- once nobody waits, `lower` drops the flags raised up to the epoch read together with that fact
  (a flag a later join raised stays) and the set-aside units become available again.
The sweeper runs `tend` for every split SKU each pass (Buckets.rebalance), and so does every read of an
entry: a joiner killed before flagging is flagged by the next pass, an interrupted move is resumed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inventory.context import text

if TYPE_CHECKING:
    from inventory.buckets import Buckets, Layout

NO_MOVE = "-"  # the move id flag and unflag take (they journal nothing)


class BucketWaitlist:
    """Flags, gathering and lowering for one process (stateless but for its Buckets)."""

    def __init__(self, buckets: "Buckets") -> None:
        self.buckets = buckets
        self.ctx = buckets.ctx
        self.keys = buckets.keys

    def tend(self, layout: "Layout") -> bool:
        """Flag and gather while buyers wait, lower the flags once nobody does; True while buyers wait."""
        waiting, epoch = (int(v or 0) for v in self.ctx.redis.hmget(self.keys.sku(layout.sku).stock, "wn", "wle"))
        if waiting:
            self.flag(layout, epoch)
            self.gather(layout)
        else:
            self.lower(layout, epoch)
        return waiting > 0

    def flag(self, layout: "Layout", epoch: int) -> int:
        """Raise every other bucket's flag to `epoch` (a no-op where it is there); units set aside."""
        if epoch < 1:
            return 0
        names = layout.buckets[1:]
        flags = self._fields(names, "wl")
        return sum(int(self.buckets._transfer(name, "flag", NO_MOVE, epoch, "")[1])
                   for name, wl in zip(names, flags) if wl < epoch)

    def gather(self, layout: "Layout") -> int:
        """Move the units the other buckets set aside into bucket 0; returns how many."""
        names = layout.buckets[1:]
        return sum(self.buckets.move(name, layout.sku, owe, mode="owed")
                   for name, owe in zip(names, self._fields(names, "owe")) if owe > 0)

    def lower(self, layout: "Layout", epoch: int) -> int:
        """Drop the flags raised up to `epoch` (read when nobody waited); units made available again."""
        names = layout.buckets[1:]
        freed = 0
        for name, wl in zip(names, self._fields(names, "wl")):
            if 0 < wl <= epoch:
                reply = self.buckets._transfer(name, "unflag", NO_MOVE, epoch, "")
                freed += int(reply[1]) if int(reply[0]) == 0 else 0
        return freed

    def _fields(self, names: list[str], field: str) -> list[int]:
        pipe = self.ctx.redis.pipeline(transaction=False)
        for name in names:
            pipe.hget(self.keys.sku(name).stock, field)
        return [int(text(v)) if v is not None else 0 for v in pipe.execute()]
