"""Pure accounting for the full-flow scenario: persistence lag, backlog drain rate, Redis/Postgres agreement."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Order status the product stores for each payment result the client sent and saw applied.
STATUS_OF_PAY = {"paid": "paid", "failed": "payment_failed"}
SOLD_STATUSES = ("pending_payment", "paid")  # statuses whose units stay sold (inventory.tables)
_EXAMPLES = 5


@dataclass(frozen=True)
class ClientOrder:
    """An order the client saw accepted (checkout 202) and the status the webhook answer reported."""

    order_id: str
    user: str
    sku: str
    qty: int
    status: str | None  # None: the webhook did not complete, status unknown to the client


@dataclass(frozen=True)
class DbOrder:
    """An order as PostgreSQL has it (one row of orders with its lines)."""

    order_id: str
    user: str
    status: str
    lines: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class SkuState:
    """One SKU's counters on one side: Redis stock hash, or ledger sums (held is Redis-only)."""

    total: int
    available: int
    held: int
    sold: int


def stats(values: Sequence[float]) -> dict:
    """n, min, p50, p90, p99, max of a sample (None when empty)."""
    if len(values) == 0:
        return {"n": 0, "min": None, "p50": None, "p90": None, "p99": None, "max": None}
    a = np.asarray(values, dtype=float)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "min": round(float(a.min()), 3), "p50": round(float(p50), 3),
            "p90": round(float(p90), 3), "p99": round(float(p99), 3), "max": round(float(a.max()), 3)}


def lag_trend(points: Sequence[tuple[float, float]], frac: float = 0.1) -> dict:
    """Lag stats of the first and the last `frac` of points by time ((t, lag) pairs), and their ratio."""
    ordered = sorted(points)
    k = max(1, int(len(ordered) * frac)) if ordered else 0
    first = stats([lag for _, lag in ordered[:k]])
    last = stats([lag for _, lag in ordered[-k:]] if k else [])

    def ratio(key: str) -> float | None:
        a, b = first[key], last[key]
        return round(b / a, 3) if a and b is not None and a > 0 else None

    return {"fraction": frac, "first": first, "last": last,
            "last_over_first_p50": ratio("p50"), "last_over_first_p99": ratio("p99")}


def lag_series(points: Sequence[tuple[float, float]], t0: float, bin_s: float = 1.0) -> list[dict]:
    """Per time bin (seconds since t0): number of orders, p50, p99 and max lag."""
    bins: dict[int, list[float]] = {}
    for t, lag in points:
        bins.setdefault(int((t - t0) // bin_s), []).append(lag)
    out = []
    for b in sorted(bins):
        s = stats(bins[b])
        out.append({"t_s": round(b * bin_s, 3), "n": s["n"], "p50": s["p50"], "p99": s["p99"], "max": s["max"]})
    return out


@dataclass(frozen=True)
class Sample:
    """The outbox at one moment: entries in the stream and entries ever added (XINFO entries-added)."""

    t: float
    length: int
    added: int

    @property
    def removed(self) -> int:
        """Entries persisted and deleted from the stream so far."""
        return self.added - self.length


def rate(samples: Sequence[Sample], t0: float, t1: float, what: str) -> float | None:
    """Entries/s `added` (arrival) or `removed` (drain) between the samples nearest t0 and t1."""
    inside = [s for s in samples if t0 <= s.t <= t1]
    if len(inside) < 2 or inside[-1].t <= inside[0].t:
        return None
    a, b = inside[0], inside[-1]
    return (getattr(b, what) - getattr(a, what)) / (b.t - a.t)


def drain_after_stall(samples: Sequence[Sample], resumed_at: float, clear_below: int) -> dict:
    """How fast the backlog built while the worker was stopped cleared once it resumed.

    Drain rate = entries removed per second from the resume until the stream first holds at most
    `clear_below` entries (arrivals continue meanwhile, so this is the drain's gross rate).
    """
    after = [s for s in samples if s.t >= resumed_at]
    if not after:
        return {"backlog_at_resume": None, "cleared": False, "clear_s": None, "drain_entries_per_s": None,
                "arrival_entries_per_s": None}
    start = after[0]
    cleared = next((s for s in after[1:] if s.length <= clear_below), None)
    end = cleared or after[-1]
    dt = end.t - start.t
    return {
        "backlog_at_resume": start.length,
        "peak_backlog": max(s.length for s in after),
        "cleared": cleared is not None,
        "clear_s": round(dt, 3) if cleared is not None else None,
        "drain_entries_per_s": round((end.removed - start.removed) / dt, 1) if dt > 0 else None,
        "arrival_entries_per_s": round((end.added - start.added) / dt, 1) if dt > 0 else None,
    }


def _some(items: Iterable[str]) -> str:
    items = sorted(items)
    more = f" (+{len(items) - _EXAMPLES} more)" if len(items) > _EXAMPLES else ""
    return ", ".join(items[:_EXAMPLES]) + more


def order_agreement(client: Sequence[ClientOrder], db: Mapping[str, DbOrder]) -> list[str]:
    """Every order the client saw accepted is in Postgres once, with its user, line and final status;
    Postgres has no order the client was not told about."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for o in client:
        seen[o.order_id] = seen.get(o.order_id, 0) + 1
    dup = [oid for oid, n in seen.items() if n > 1]
    if dup:
        problems.append(f"{len(dup)} order ids returned to more than one checkout: {_some(dup)}")
    missing = [o.order_id for o in client if o.order_id not in db]
    if missing:
        problems.append(f"{len(missing)} accepted orders missing in Postgres: {_some(missing)}")
    wrong_status = [f"{o.order_id} {db[o.order_id].status}!={o.status}" for o in client
                    if o.order_id in db and o.status is not None and db[o.order_id].status != o.status]
    if wrong_status:
        problems.append(f"{len(wrong_status)} orders with another status in Postgres: {_some(wrong_status)}")
    wrong_content = [o.order_id for o in client if o.order_id in db and
                     (db[o.order_id].user != o.user or db[o.order_id].lines != ((o.sku, o.qty),))]
    if wrong_content:
        problems.append(f"{len(wrong_content)} orders with another user or lines in Postgres: {_some(wrong_content)}")
    extra = set(db) - set(seen)
    if extra:
        problems.append(f"{len(extra)} orders in Postgres that no checkout returned: {_some(extra)}")
    return problems


def expected_sold(client: Sequence[ClientOrder]) -> dict[str, int]:
    """Units per SKU the client's orders keep sold (paid or still pending)."""
    sold: dict[str, int] = {}
    for o in client:
        if o.status in SOLD_STATUSES:
            sold[o.sku] = sold.get(o.sku, 0) + o.qty
    return sold


def stock_agreement(totals: Mapping[str, int], client_sold: Mapping[str, int], client_held: Mapping[str, int],
                    redis: Mapping[str, SkuState | None], ledger: Mapping[str, tuple[int, int]]) -> list[str]:
    """Per SKU: Redis counters == ledger sums == what the client's orders imply (total seeded, sold
    = units of paid orders, held = holds the client left open, available = the rest)."""
    problems = []
    for sku, total in sorted(totals.items()):
        sold, held = client_sold.get(sku, 0), client_held.get(sku, 0)
        want = SkuState(total, total - held - sold, held, sold)
        got = redis.get(sku)
        if got != want:
            problems.append(f"{sku}: Redis {got} != expected {want}")
        ledger_total, ledger_sold = ledger.get(sku, (0, 0))
        if (ledger_total, ledger_sold) != (total, sold):
            problems.append(f"{sku}: Postgres ledger total/sold {ledger_total}/{ledger_sold} != {total}/{sold}")
    return problems
