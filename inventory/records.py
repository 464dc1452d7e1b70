"""Reading reservation records wherever they live: packed in their partition's record bucket or in a
hash key of their own (lua/includes/common.lua, "Reservation records", writes both forms)."""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from inventory.context import Context, decode_hash, text
from inventory.keys import Partition

PRUNE_ROUND_MS = 60_000  # every record bucket is pruned once per round, a slice of them per sweep
PRUNE_BATCH = 5_000  # most records one call drops (a bucket that grew past it finishes on its next turns)

_US = b"\x1f"
_FINGERPRINT = 1  # flag: 8 bytes after the header are the fingerprint's first 16 hex digits
_UUID_USER = 2  # flag: the user is a lower-case UUID kept as its 16 bytes
_HEADER = 15  # flags, exp (6 bytes), exp - ct (4), until - exp (4), big-endian


def unpack_record(packed: bytes) -> dict[str, str]:
    """The fields of a packed record, as HGETALL of its own key would give them."""
    flags, expires = packed[0], int.from_bytes(packed[1:7], "big")
    rest = packed[_HEADER:]
    record = {"u": "", "st": "held", "exp": str(expires), "ct": str(expires - int.from_bytes(packed[7:11], "big")),
              "n": "1"}
    if flags & _FINGERPRINT:
        record["fp"], rest = rest[:8].hex(), rest[8:]
    qty, price, sku, user = rest.split(_US, 3)
    record |= {f"l:{sku.decode()}": qty.decode(), f"p:{sku.decode()}": price.decode()}
    record["u"] = str(uuid.UUID(bytes=user)) if flags & _UUID_USER else user.decode()
    return record


def packed_until(packed: bytes) -> int:
    """When a packed record may go (ms on the scripts' clock), as a key's TTL says for one of its own."""
    return int.from_bytes(packed[1:7], "big") + int.from_bytes(packed[11:15], "big")


def record_of(packed: Any, own: Any) -> dict[str, str]:
    """A record from the replies of HGET <bucket> <token> and HGETALL <key> ({} when neither has it)."""
    return unpack_record(packed if isinstance(packed, bytes) else text(packed).encode()) if packed else decode_hash(own)


def queue_read(pipe: Any, part: Partition, token: str) -> None:
    """Queue the two reads `record_of` takes, in that order, on a pipeline."""
    pipe.hget(part.record_bucket(token), token)
    pipe.hgetall(part.reservation(token))


def read_record(client: Any, part: Partition, token: str) -> dict[str, str]:
    """One reservation part's record ({} when there is none)."""
    pipe = client.pipeline(transaction=False)
    queue_read(pipe, part, token)
    return record_of(*pipe.execute())


class RecordPruner:
    """Drops packed records past their retention (lua/prune_records): a key of its own has a TTL, a
    field of a bucket does not."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.every = [bucket for part in ctx.keys.parts for bucket in part.all_record_buckets()]

    def due_slice(self) -> list[str]:
        """This sweep's share of the buckets: each comes up once per round of PRUNE_ROUND_MS on the
        scripts' clock, whichever process sweeps."""
        interval = max(int(self.ctx.settings.expire_interval_seconds * 1000), 1)
        slices = max(PRUNE_ROUND_MS // interval, 1)
        return self.every[(self.ctx.now_ms() // interval) % slices::slices]

    def prune(self, buckets: Sequence[str] | None = None) -> int:
        """Prune the given buckets (default: this sweep's slice); the number of records dropped."""
        batch = self.ctx.script_batch()
        for bucket in self.due_slice() if buckets is None else buckets:
            batch.call("prune_records", [bucket], [PRUNE_BATCH])
        replies = batch.execute()
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return sum(int(reply[0]) for reply in replies)
