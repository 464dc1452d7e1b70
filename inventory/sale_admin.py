"""Sale control for many SKUs at once: window, pause/resume, per-user limit; validated, pipelined, CAS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from inventory.catalog import sale_state
from inventory.context import text
from inventory.engine import Inventory
from inventory.errors import InvalidArgument, InventoryError, ProductNotFound, VersionConflict, raise_for_reply
from inventory.validation import check_non_negative, check_sku

_RETRIES = 3
_BATCH = 500
_FIELDS = ("ver", "paused", "start", "end")


@dataclass(frozen=True)
class SaleChange:
    """What happened to one SKU's sale settings."""

    sku: str
    applied: bool
    state: str
    version: int
    note: str = ""


def all_skus(inv: Inventory) -> list[str]:
    """Every SKU of the catalogue (for --all)."""
    return inv.catalog.all_skus()


def update_sale(
    inv: Inventory,
    skus: list[str],
    *,
    starts_at_ms: int | None = None,
    ends_at_ms: int | None = None,
    paused: bool | None = None,
    per_user_limit: int | None = None,
    expected_version: int | None = None,
) -> list[SaleChange]:
    """Change sale settings of SKUs; everything is validated before the first write.

    None leaves a setting as it is; a window bound of 0 makes it open. A SKU being rebuilt (recovering)
    is never paused or resumed here: the recovery owns that flag until it is done. Without an expected
    version each SKU is compare-and-set against the version just read, and retried on a concurrent change.
    """
    if not skus:
        raise InvalidArgument("Name at least one SKU (or all of them).", field="sku")
    for sku in skus:
        check_sku(sku)
    for value, name in ((starts_at_ms, "sale_starts_at"), (ends_at_ms, "sale_ends_at")):
        if value is not None:
            check_non_negative(value, name, upper=10**15)
    if per_user_limit is not None:
        check_non_negative(per_user_limit, "per_user_limit", upper=1_000_000)
    if expected_version is not None and len(skus) != 1:
        raise InvalidArgument("--expect-version applies to one SKU at a time.", field="expected_version")

    results: dict[str, SaleChange] = {}
    pending = list(dict.fromkeys(skus))
    state_of = _state_reader(inv)
    for attempt in range(_RETRIES):
        live = dict(zip(pending, _read(inv, pending)))
        writes: list[tuple[str, list[Any], int]] = []
        for sku in pending:
            fields = live[sku]
            if not fields:
                raise ProductNotFound("No such product.", sku=sku)
            version = int(fields.get("ver") or 0)
            if expected_version is not None and expected_version != version:
                raise VersionConflict("The product changed since the expected version.",
                                      expected=expected_version, actual=version)
            pairs, note = _pairs(sku, fields, starts_at_ms, ends_at_ms, paused, per_user_limit)
            if pairs:
                writes.append((sku, pairs, version))
            else:
                results[sku] = SaleChange(sku, False, state_of(fields), version, note)
        conflicts = _write(inv, writes, results)
        if not conflicts:
            break
        if expected_version is not None or attempt == _RETRIES - 1:
            raise VersionConflict("The product kept changing; try again.", sku=conflicts[0])
        pending = conflicts
    return [results[sku] for sku in dict.fromkeys(skus)]


def _pairs(sku: str, fields: dict[str, str], starts_at_ms: int | None, ends_at_ms: int | None,
           paused: bool | None, per_user_limit: int | None) -> tuple[list[Any], str]:
    pairs: list[Any] = []
    if starts_at_ms is not None or ends_at_ms is not None:
        starts = starts_at_ms if starts_at_ms is not None else int(fields.get("start") or 0)
        ends = ends_at_ms if ends_at_ms is not None else int(fields.get("end") or 0)
        if starts and ends and ends <= starts:
            raise InvalidArgument("The sale must end after it starts.", field="window", sku=sku,
                                  sale_starts_at=starts, sale_ends_at=ends)
        pairs += ["start", starts, "end", ends]
    if per_user_limit is not None:
        pairs += ["limit", per_user_limit]
    note = ""
    if paused is not None:
        flag = fields.get("paused", "0")
        if flag == "r":
            note = "recovering: left to the rebuild"
        elif flag == ("1" if paused else "0"):
            note = "already paused" if paused else "not paused"
        else:
            pairs += ["paused", "1" if paused else "0"]
    return pairs, note


def _read(inv: Inventory, skus: list[str]) -> Iterator[dict[str, str]]:
    for start in range(0, len(skus), _BATCH):
        pipe = inv.redis.pipeline(transaction=False)
        for sku in skus[start:start + _BATCH]:
            pipe.hmget(inv.keys.sku(sku).stock, _FIELDS)
        for values in pipe.execute():
            yield {} if values[0] is None else {f: text(v) for f, v in zip(_FIELDS, values) if v is not None}


def _write(inv: Inventory, writes: list[tuple[str, list[Any], int]], results: dict[str, SaleChange]) -> list[str]:
    """Pipelined configure calls; returns the SKUs that hit a version conflict."""
    conflicts: list[str] = []
    for start in range(0, len(writes), _BATCH):
        batch = writes[start:start + _BATCH]
        calls = inv.ctx.script_batch()
        for sku, pairs, version in batch:
            calls.call("configure_product", *inv.catalog.configure_call(sku, pairs, version))
        for (sku, _pairs_, _version), reply in zip(batch, calls.execute()):
            if isinstance(reply, Exception):
                raise reply
            try:
                raise_for_reply(reply)
            except VersionConflict:
                conflicts.append(sku)
                continue
            except InventoryError:
                raise
            results[sku] = SaleChange(sku, True, "", int(reply[1]))
        applied = [(sku, pairs) for sku, pairs, _ in batch if sku in results and results[sku].applied]
        layouts = inv.buckets.layouts([sku for sku, _ in applied], fresh=True)
        for sku, pairs in applied:
            if layouts[sku].split:  # a split SKU's other buckets take the same settings
                inv.buckets.configure_buckets(sku, pairs)
    _fill_states(inv, results)
    return conflicts


def _fill_states(inv: Inventory, results: dict[str, SaleChange]) -> None:
    applied = [sku for sku, change in results.items() if change.applied and not change.state]
    state_of = _state_reader(inv)
    for sku, fields in zip(applied, _read(inv, applied)):
        change = results[sku]
        results[sku] = SaleChange(sku, True, state_of(fields), change.version, change.note)


def _state_reader(inv: Inventory) -> Callable[[dict[str, str]], str]:
    """Names a SKU's sale state; Redis's time and the global switch are read once, not once per SKU."""
    now, globally = inv.ctx.now_ms(), global_paused(inv)
    return lambda fields: sale_state(fields, now, globally).value


def set_global_pause(inv: Inventory, paused: bool) -> bool:
    """Pause (or resume) every sale at once, SKUs created later included; per-SKU settings are kept.

    The reserve and amend scripts read the switch themselves, so the next hold after this call is refused.
    """
    if not isinstance(paused, bool):
        raise InvalidArgument("paused must be true or false.", field="paused")
    value = "1" if paused else "0"
    # The first partition's copy is the durable record, written last, so a crash midway leaves
    # PostgreSQL with the previous value and a rerun finishes the job.
    for part in reversed(inv.keys.parts):
        reply = inv.ctx.run("set_sale_switch", [part.sale_switch, part.outbox], [value, "1" if part.index == 0 else ""])
    return bool(int(reply[1]))


def global_paused(inv: Inventory) -> bool:
    """Whether the global switch pauses sales right now (any partition's copy: mid-switch, the safe answer)."""
    pipe = inv.redis.pipeline(transaction=False)
    for part in inv.keys.parts:
        pipe.get(part.sale_switch)
    return b"1" in pipe.execute()


def live_skus(inv: Inventory, skus: list[str]) -> list[str]:
    """The SKUs among `skus` whose sale is running right now (active: open window, not paused)."""
    found = []
    state_of = _state_reader(inv)
    for sku, fields in zip(skus, _read(inv, skus)):
        if fields and state_of(fields) == "active":
            found.append(sku)
    return found
