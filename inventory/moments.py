"""Admin-entered points in time: ISO 8601 with an offset, epoch ms, 'now', '+15m', or 'open'."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from inventory.errors import InvalidArgument

OPEN_WORDS = ("open", "none", "0")
_RELATIVE = re.compile(r"^\+(\d{1,9})([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_MAX_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z


def parse_moment(value: str, now_ms: int, *, field: str = "time") -> int:
    """Milliseconds since the epoch (UTC); 0 means 'open' (no bound)."""
    text = str(value).strip()
    if text.lower() in OPEN_WORDS:
        return 0
    if text.lower() == "now":
        return now_ms
    relative = _RELATIVE.match(text)
    if relative:
        return now_ms + int(relative.group(1)) * _UNIT_MS[relative.group(2)]
    if text.isdigit():
        ms = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise InvalidArgument(
                f"{field} must be ISO 8601 with a timezone (2030-01-31T10:00:00Z), epoch ms, 'now', "
                "'+30m' or 'open'.", field=field, value=text) from None
        if moment.tzinfo is None:
            raise InvalidArgument(f"{field} must carry a timezone, e.g. 'Z' or '+01:00'.", field=field, value=text)
        ms = int(moment.astimezone(timezone.utc).timestamp() * 1000)
    if not 0 < ms <= _MAX_MS:
        raise InvalidArgument(f"{field} is out of range.", field=field, value=text)
    return ms


def format_moment(ms: int | None) -> str:
    """ISO 8601 UTC with 'Z' for a ms timestamp; '' for open (0/None)."""
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
