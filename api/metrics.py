"""Prometheus metrics: request counts and latency, reservations by outcome, live stock gauges.

Under gunicorn the metrics are multiprocess-safe: the config sets PROMETHEUS_MULTIPROC_DIR before the
app is imported, each worker writes its own files, and /metrics aggregates them. Stock gauges are read
from Redis at scrape time, so they are exact whichever worker answers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from typing import Any, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from api.turns import PerTurn
from inventory.engine import Inventory
from inventory.operations import OutboxLag, outbox_lag

REQUESTS = Counter("flashstock_http_requests", "HTTP requests answered.", ["method", "endpoint", "status"])
LATENCY = Histogram(
    "flashstock_http_request_duration_seconds", "Time to answer an HTTP request.", ["method", "endpoint"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
RESERVATIONS = Counter("flashstock_reservations", "Reservation attempts by outcome (held or error code).",
                       ["outcome"])
RESERVATIONS_HELD = RESERVATIONS.labels("held")
_outcomes: dict[str, Any] = {"held": RESERVATIONS_HELD}
CHECKOUTS = Counter("flashstock_checkouts", "Checkout attempts by outcome.", ["outcome"])
PAYMENTS = Counter("flashstock_payment_events", "Payment webhook events by resulting status.", ["status"])
SOLDOUT_CACHED = Counter("flashstock_soldout_cache_answers", "sold_out answers served from a process's sold-out "
                         "cache, without Redis (also counted in flashstock_reservations).")
SOLDOUT_WITH_STOCK = Counter("flashstock_soldout_with_stock", "sold_out answers for a SKU split into stock "
                             "buckets while one of its buckets still had the units (inventory/buckets.py).")
WAITLIST = Counter("flashstock_waitlist_requests", "Waitlist joins, leaves and claims by outcome.",
                   ["action", "outcome"])

MAX_STOCK_SERIES = 1000
_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


class TurnUpdates(PerTurn):
    """Counter and histogram updates made during one event-loop turn, applied together at its end.

    In multiprocess mode each update takes a lock, asks the OS for the process id and writes the value
    into the worker's mmap file (prometheus_client's MultiProcessValue): 4-5 per reserve answer. Gathered,
    the answers of one turn share one update per metric (and per histogram bucket), applied once the
    turn's greenlets have run, before the worker next waits for I/O, so /metrics is at most one loop turn
    behind the answers already sent. A worker killed mid-turn loses that turn's updates. Without a
    loop that asks for this (tests, the Flask dev server), each update is applied at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._counts: dict[Any, float] = {}
        self._observed: dict[Any, list[float]] = {}

    def inc(self, counter: Any, amount: float = 1.0) -> None:
        """counter.inc(amount), now or at the end of this turn."""
        if self.defer():
            self._counts[counter] = self._counts.get(counter, 0.0) + amount
        else:
            counter.inc(amount)

    def observe(self, histogram: Any, amount: float) -> None:
        """histogram.observe(amount), now or at the end of this turn."""
        if not self.defer():
            histogram.observe(amount)
            return
        observed = self._observed.get(histogram)
        if observed is None:
            observed = self._observed[histogram] = []
        observed.append(amount)

    def flush(self) -> None:
        """Apply every waiting update."""
        counts, observed = self._counts, self._observed
        self._counts, self._observed = {}, {}
        for counter, amount in counts.items():
            counter.inc(amount)
        for histogram, amounts in observed.items():
            observe_all(histogram, amounts)


def observe_all(histogram: Any, amounts: list[float]) -> None:
    """What histogram.observe(a) for each of `amounts` records, as one update per bucket touched.

    prometheus_client has no public call for this; it keeps each observation in the first bucket whose
    upper bound holds it, plus the sum (tests/api/test_ops.py checks the exposition is the same).
    """
    histogram._raise_if_not_observable()  # noqa: SLF001
    histogram._sum.inc(sum(amounts))  # noqa: SLF001
    bounds = histogram._upper_bounds  # noqa: SLF001
    for bucket, count in Tally(bisect_left(bounds, amount) for amount in amounts).items():
        histogram._buckets[bucket].inc(count)  # noqa: SLF001


updates = TurnUpdates()


def reservation_outcome(outcome: str) -> Any:
    """The reservation counter for one outcome (children cached, as in observe_request)."""
    child = _outcomes.get(outcome)
    if child is None:
        child = _outcomes[outcome] = RESERVATIONS.labels(outcome)
    return child


def observe_request(method: str, endpoint: str, status: int, seconds: float) -> None:
    """Count a request and its latency (label children are cached: labels() costs a lock and a lookup)."""
    children = _request_children.get((method, endpoint, status))
    if children is None:
        children = (REQUESTS.labels(method, endpoint, str(status)), LATENCY.labels(method, endpoint))
        _request_children[(method, endpoint, status)] = children
    updates.inc(children[0])
    updates.observe(children[1], seconds)


class StockCollector:
    """Gauges of available / held / sold / total units per SKU, read from Redis when scraped."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory

    def collect(self) -> Iterator[Metric]:
        families = {name: GaugeMetricFamily(f"flashstock_stock_{name}", f"Units {name} per SKU.", labels=["sku"])
                    for name in ("available", "held", "sold", "total")}
        waiting = GaugeMetricFamily("flashstock_waitlist_waiting", "Buyers waiting per sold-out SKU.", labels=["sku"])
        set_aside = GaugeMetricFamily("flashstock_waitlist_set_aside",
                                      "Units set aside for waiting buyers, not offered yet, per SKU.", labels=["sku"])
        products = self.inventory.catalog.list(limit=MAX_STOCK_SERIES)
        for product in products:
            level = product.stock
            families["available"].add_metric([product.sku], level.available)
            families["held"].add_metric([product.sku], level.held)
            families["sold"].add_metric([product.sku], level.sold)
            families["total"].add_metric([product.sku], level.total)
        for sku, (buyers, units) in self.inventory.waitlists.counts([p.sku for p in products]).items():
            waiting.add_metric([sku], buyers)
            set_aside.add_metric([sku], units)
        yield from families.values()
        yield waiting
        yield set_aside
        yield from outbox_gauges(outbox_lag(self.inventory))


def outbox_gauges(lag: OutboxLag) -> list[Metric]:
    """How far persistence is behind: what to alert on when the outbox stops draining."""
    depth = GaugeMetricFamily("flashstock_outbox_depth",
                              "Outbox events not yet persisted to the database, over every partition.")
    depth.add_metric([], lag.depth)
    age = GaugeMetricFamily("flashstock_outbox_oldest_age_seconds",
                            "Age of the oldest outbox event not yet persisted, by Redis's clock (0 when empty).")
    age.add_metric([], (lag.oldest_age_ms or 0) / 1000)
    return [depth, age]


class _Default:
    """The process's default registry, for single-process serving and the test client."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


def outcome_counts(multiproc_dir: str = "") -> dict[str, dict[str, float]]:
    """Reservation and checkout attempts by outcome since start, summed over this host's workers."""
    updates.flush()
    registry = CollectorRegistry(auto_describe=False)
    if multiproc_dir:
        MultiProcessCollector(registry, path=multiproc_dir)
    else:
        registry.register(_Default())  # type: ignore[arg-type]
    wanted = {"flashstock_reservations": "reservations", "flashstock_checkouts": "checkouts"}
    counts: dict[str, dict[str, float]] = {name: {} for name in wanted.values()}
    for family in registry.collect():
        name = wanted.get(family.name)
        if name is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                outcome = sample.labels.get("outcome", "")
                counts[name][outcome] = counts[name].get(outcome, 0.0) + sample.value
    return counts


def render(inventory: Inventory, multiproc_dir: str = "") -> tuple[bytes, str]:
    """The exposition text of every metric plus the live stock gauges."""
    updates.flush()  # this worker's own answers so far; the others' are at most one loop turn behind
    registry = CollectorRegistry(auto_describe=False)
    if multiproc_dir:
        MultiProcessCollector(registry, path=multiproc_dir)
    else:
        registry.register(_Default())  # type: ignore[arg-type]
    registry.register(StockCollector(inventory))  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST
