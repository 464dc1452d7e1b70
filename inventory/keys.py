"""The only place that builds Redis key names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SkuKeys:
    """The three keys of one SKU; they share the hash tag {sku:<sku>} and so one cluster slot."""

    stock: str
    holds: str
    buyers: str

    def as_list(self) -> list[str]:
        """Keys in the order scripts expect per line: stock, holds, buyers."""
        return [self.stock, self.holds, self.buyers]


@dataclass(frozen=True)
class KeySpace:
    """Key names under one prefix, so several deployments or test runs share a server safely."""

    prefix: str = "fs"

    def sku(self, sku: str) -> SkuKeys:
        """Keys of one SKU: stock hash, holds zset, buyers hash."""
        tag = f"{self.prefix}:{{sku:{sku}}}"
        return SkuKeys(stock=f"{tag}:stock", holds=f"{tag}:holds", buyers=f"{tag}:buyers")

    def reservation(self, token: str) -> str:
        """Hash holding one reservation and, once checked out, its order."""
        return f"{self.prefix}:{{res:{token}}}"

    def reservation_match(self) -> str:
        """SCAN pattern matching every reservation record (admin repair paths only)."""
        return f"{self.prefix}:{{res:*"

    def user_orders(self, user_id: str) -> str:
        """Zset of a user's order ids by creation time."""
        return f"{self.prefix}:{{user:{user_id}}}:orders"

    @property
    def expiries(self) -> str:
        """Zset of open reservation tokens by expiry (ms)."""
        return f"{self.prefix}:expiries"

    @property
    def dirty(self) -> str:
        """Set of SKUs changed since the last reconciliation."""
        return f"{self.prefix}:dirty"

    @property
    def outbox(self) -> str:
        """Stream of events (orders, payments, stock changes) waiting to be persisted."""
        return f"{self.prefix}:outbox"

    @property
    def sale_switch(self) -> str:
        """Global sale switch ('1' = every sale paused), read by the scripts that hold stock."""
        return f"{self.prefix}:sale"

    @property
    def catalog(self) -> str:
        """Zset of every SKU (score 0, lexicographic order)."""
        return f"{self.prefix}:catalog"

    @property
    def epoch(self) -> str:
        """Marker written when Redis state is seeded or rebuilt; missing means Redis lost data."""
        return f"{self.prefix}:epoch"

    @property
    def test_clock(self) -> str:
        """Virtual time of a test's clock (tests/clocks.py); outside the prefix, so a test that
        simulates data loss by deleting '<prefix>:*' keeps its clock, as Redis keeps TIME."""
        return f"{self.prefix}.testclock"

    def scoped(self, name: str) -> str:
        """A key owned by an adapter (rate limits, idempotency records, locks) under this prefix."""
        return f"{self.prefix}:{name}"
