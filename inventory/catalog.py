"""Products: catalogue data, sale settings, stock adjustments and live availability."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from inventory.buckets import Buckets, is_internal
from inventory.context import Context, decode_hash, text
from inventory.errors import InvalidArgument, ProductNotFound
from inventory.holds import bucket_numbers, merge_holds, read_buckets
from inventory.models import Hold, Product, SaleState, StockLevel, from_ms
from inventory.part_calls import PIN_WINDOW_MS
from inventory.validation import check_non_negative, check_sku

_UNSET: Any = object()


def to_ms(moment: datetime | None) -> int:
    """Milliseconds since the epoch for an aware datetime; None means 'open' (0)."""
    if moment is None:
        return 0
    if moment.tzinfo is None:
        raise InvalidArgument("Times must carry a timezone (UTC).", field="window")
    return int(moment.astimezone(timezone.utc).timestamp() * 1000)


def sale_state(fields: dict[str, str], now_ms: int, globally_paused: bool = False) -> SaleState:
    """Mirror of the scripts' closed_reason(): why a SKU can or cannot be reserved now."""
    if fields.get("paused") == "r":
        return SaleState.RECOVERING
    if globally_paused:
        return SaleState.PAUSED_GLOBALLY
    if fields.get("paused") == "1":
        return SaleState.PAUSED
    starts, ends = int(fields.get("start") or 0), int(fields.get("end") or 0)
    if starts and now_ms < starts:
        return SaleState.NOT_STARTED
    if ends and now_ms >= ends:
        return SaleState.ENDED
    return SaleState.ACTIVE


def product_of(sku: str, fields: dict[str, str], now_ms: int, globally_paused: bool = False) -> Product:
    """A Product from the SKU's stock hash (and the global sale switch)."""
    return Product(
        sku=sku,
        name=fields.get("name", sku),
        price=int(fields.get("price") or 0),
        currency=fields.get("cur", "USD"),
        per_user_limit=int(fields.get("limit") or 0),
        sale_starts_at=from_ms(int(fields.get("start") or 0)),
        sale_ends_at=from_ms(int(fields.get("end") or 0)),
        paused=fields.get("paused", "0") != "0",
        sale_state=sale_state(fields, now_ms, globally_paused),
        stock=stock_of(sku, fields),
        buckets=int(fields.get("bk") or 1),
    )


def stock_of(sku: str, fields: dict[str, str]) -> StockLevel:
    return StockLevel(
        sku=sku,
        total=int(fields.get("total") or 0),
        available=int(fields.get("avail") or 0),
        held=int(fields.get("held") or 0),
        sold=int(fields.get("sold") or 0),
        version=int(fields.get("ver") or 0),
    )


class Catalog:
    """Admin writes and storefront reads of products; all of it Redis only."""

    def __init__(self, ctx: Context, buckets: Buckets | None = None) -> None:
        self.ctx = ctx
        self.buckets = buckets or Buckets(ctx)

    def configure(
        self,
        sku: str,
        *,
        name: str | None = None,
        price: int | None = None,
        currency: str | None = None,
        per_user_limit: int | None = None,
        starts_at: datetime | None = _UNSET,
        ends_at: datetime | None = _UNSET,
        paused: bool | None = None,
        expected_version: int | None = None,
    ) -> Product:
        """Create a product or change catalogue data and sale settings (compare-and-set optional)."""
        pairs = self.configure_pairs(
            sku, name=name, price=price, currency=currency, per_user_limit=per_user_limit,
            starts_at=starts_at, ends_at=ends_at, paused=paused,
        )
        self._raw_configure(sku, pairs, expected_version)
        self.buckets.configure_buckets(sku, pairs)
        return self.get(sku)

    @staticmethod
    def configure_pairs(
        sku: str,
        *,
        name: str | None = None,
        price: int | None = None,
        currency: str | None = None,
        per_user_limit: int | None = None,
        starts_at: datetime | None = _UNSET,
        ends_at: datetime | None = _UNSET,
        paused: bool | None = None,
    ) -> list[Any]:
        """Validated field/value pairs for the configure_product script (what `configure` sends)."""
        check_sku(sku)
        pairs: list[Any] = []
        if name is not None:
            if not isinstance(name, str) or not 1 <= len(name) <= 200:
                raise InvalidArgument("name must be 1-200 characters.", field="name")
            pairs += ["name", name]
        if price is not None:
            pairs += ["price", check_non_negative(price, "price")]
        if currency is not None:
            if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()):
                raise InvalidArgument("currency must be a 3-letter ISO 4217 code.", field="currency")
            pairs += ["cur", currency]
        if per_user_limit is not None:
            pairs += ["limit", check_non_negative(per_user_limit, "per_user_limit", upper=1_000_000)]
        if starts_at is not _UNSET:
            pairs += ["start", to_ms(starts_at)]
        if ends_at is not _UNSET:
            pairs += ["end", to_ms(ends_at)]
        if paused is not None:
            pairs += ["paused", "1" if paused else "0"]
        return pairs

    def set_recovering(self, sku: str, recovering: bool, *, paused: bool = False) -> None:
        """Stop reservations of a SKU while its counters are rebuilt, or end that (rebuild only).

        Only this call leaves 'recovering' (then to `paused`): admins get ProductRecovering meanwhile.
        """
        flag = "r" if recovering else ("1" if paused else "0")
        self._raw_configure(sku, ["paused", flag], None, rebuild=True)

    def adjust_stock(
        self,
        sku: str,
        *,
        set_total: int | None = None,
        add: int | None = None,
        expected_version: int | None = None,
        reason: str = "admin",
    ) -> StockLevel:
        """Set the total or add/remove units; open holds and sold units are never touched."""
        check_sku(sku)
        if (set_total is None) == (add is None):
            raise InvalidArgument("Give exactly one of 'set' and 'add'.", field="set")
        if set_total is not None:
            mode, units = "set", check_non_negative(set_total, "set")
        else:
            if isinstance(add, bool) or not isinstance(add, int) or abs(add) > 10**12:
                raise InvalidArgument("add must be an integer.", field="add")
            mode, units = "add", add
        if self.buckets.layout(sku, fresh=True).split:
            return self.buckets.adjust(sku, mode, units, expected_version, reason)
        reply = self.ctx.run("adjust_stock", *self.adjust_call(sku, mode, units, expected_version, reason))
        total, avail, held, sold, version = (int(v) for v in reply[1:6])
        return StockLevel(sku, total, avail, held, sold, version)

    def get(self, sku: str) -> Product:
        """One product with live stock."""
        check_sku(sku)
        pipe = self.ctx.redis.pipeline(transaction=False)
        part = self.ctx.keys.of_sku(sku)
        pipe.hgetall(part.sku(sku).stock)
        pipe.get(part.sale_switch)
        raw, switch = pipe.execute()
        fields = decode_hash(raw)
        if not fields:
            raise ProductNotFound("No such product.", sku=sku)
        fields = self.buckets.sum_into({sku: fields})[sku]
        return product_of(sku, fields, self.ctx.now_ms(), switch == b"1")

    def list(self, *, after: str = "", limit: int = 100) -> list[Product]:
        """Products in SKU order, `limit` at a time after the SKU `after` (stock buckets summed, not listed)."""
        skus = product_page(self.ctx, after, limit)
        pipe = self.ctx.redis.pipeline(transaction=False)
        for sku in skus:
            part = self.ctx.keys.of_sku(sku)
            pipe.hgetall(part.sku(sku).stock)
            pipe.get(part.sale_switch)
        replies = pipe.execute()
        now = self.ctx.now_ms()
        found = self.buckets.sum_into({sku: decode_hash(raw) for sku, raw in zip(skus, replies[::2]) if raw})
        return [product_of(sku, found[sku], now, switch == b"1")
                for sku, switch in zip(skus, replies[1::2]) if sku in found]

    def all_skus(self) -> list[str]:
        """Every product SKU in the catalogue index (stock buckets and quotas are not products)."""
        pipe = self.ctx.redis.pipeline(transaction=False)
        for part in self.ctx.keys.parts:
            pipe.zrange(part.catalog, 0, -1)
        return sorted(sku for found in pipe.execute() for sku in map(text, found) if not is_internal(sku))

    def holds(self, sku: str, *, limit: int = 100) -> list[Hold]:
        """Open holds on a SKU (offers to waiting buyers included), soonest expiry first."""
        check_sku(sku)
        pipe = self.ctx.redis.pipeline(transaction=False)
        names = self.buckets.layout(sku).buckets  # a split SKU's holds are in its stock buckets
        for name in names:
            pipe.zrange(self.ctx.keys.sku(name).holds, 0, limit - 1, withscores=True)
            pipe.hgetall(self.ctx.keys.sku(name).stock)  # a light SKU's holds (inventory/holds.py)
        found = pipe.execute()
        every = []  # a hold bucket's entry comes no later than its holds: the first `limit` entries suffice
        for name, zset, stock in zip(names, found[0::2], found[1::2]):
            keys = self.ctx.keys.sku(name)
            every += merge_holds(zset, stock, read_buckets(self.ctx.redis, keys, bucket_numbers(zset)))
        holds = []
        for token, qty, user, score in sorted(every, key=lambda hold: hold[3])[:limit]:
            if not user:
                continue  # units set aside for the SKU's waitlist (Waitlists.summary), no buyer's hold
            # +inf: pinned by a multi-part checkout until it resolves; shown with its pin window's end
            expires = int(score) if score != float("inf") else self.ctx.now_ms() + PIN_WINDOW_MS
            holds.append(Hold(f"r_{token}", user, int(qty), from_ms(expires)))  # type: ignore[arg-type]
        return holds

    def _raw_configure(self, sku: str, pairs: list[Any], expected_version: int | None, *,
                       rebuild: bool = False) -> int:
        reply = self.ctx.run("configure_product", *self.configure_call(sku, pairs, expected_version, rebuild=rebuild))
        return int(reply[1])

    # Keys and arguments of the two admin scripts, so batch writers (the importer) can pipeline them.

    def configure_call(self, sku: str, pairs: list[Any], expected_version: int | None, *,
                       rebuild: bool = False) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of configure_product for already validated pairs."""
        part = self.ctx.keys.of_sku(sku)
        return ([part.sku(sku).stock, part.catalog, part.dirty, part.outbox],
                [sku, self._version_arg(expected_version), "1" if rebuild else "", *pairs])

    def adjust_call(self, sku: str, mode: str, units: int, expected_version: int | None,
                    reason: str) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of adjust_stock ('set' a total or 'add' a signed delta)."""
        part = self.ctx.keys.of_sku(sku)
        return ([part.sku(sku).stock, part.dirty, part.outbox],
                [sku, mode, units, self._version_arg(expected_version), reason])

    @staticmethod
    def _version_arg(expected_version: int | None) -> Any:
        if expected_version is None:
            return ""
        return check_non_negative(expected_version, "expected_version")


def product_page(ctx: Context, after: str, limit: int) -> list[str]:
    """catalog_page without the internal SKUs of stock buckets (inventory/buckets.py): products only."""
    skus: list[str] = []
    while len(skus) < limit:
        page = catalog_page(ctx, after, limit)
        skus += [sku for sku in page if not is_internal(sku)]
        if len(page) < limit:
            break
        after = page[-1]
    return skus[:limit]


def catalog_page(ctx: Context, after: str, limit: int) -> list[str]:
    """The next `limit` SKUs after `after` in SKU order, merged from every partition's catalogue."""
    start = f"({after}" if after else "-"
    pipe = ctx.redis.pipeline(transaction=False)
    for part in ctx.keys.parts:
        pipe.zrangebylex(part.catalog, start, "+", start=0, num=limit)
    return sorted(text(s) for found in pipe.execute() for s in found)[:limit]
