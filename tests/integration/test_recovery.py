"""Redis recovery: an emptied or rolled-back Redis is detected and rebuilt from Postgres (real servers)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta

import pytest

from inventory import Inventory
from inventory import recovery as recovery_module
from inventory.buyers import read_buyers
from inventory.errors import InventoryError, SaleNotActive
from inventory.persistence import persist_now
from inventory.reconcile import run_reconciliation
from inventory.recovery import check_recovery, rebuild_from_postgres
from tests.conftest import delete_prefix
from tests.helpers import assert_invariant, make_product, stock
from tests.unit.test_scripts import skus_in_distinct_partitions


def _sell(inv: Inventory, n: int, sku: str = "HOT", start: int = 0) -> list[str]:
    return [inv.reservations.checkout(inv.reservations.reserve(f"b{i}", {sku: 1}).id).id
            for i in range(start, start + n)]


def _try_reserve(inv: Inventory, user: str, sku: str = "HOT") -> str:
    try:
        inv.reservations.reserve(user, {sku: 1})
        return "held"
    except InventoryError as error:
        return error.code


def test_redis_flushed_mid_sale_refuses_reservations_until_rebuilt_then_sells_exactly_the_rest(
        real_inv: Inventory, pg_sessions, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_recovery(real_inv, pg_sessions).state == "initialized"
    make_product(real_inv, "HOT", stock=50, limit=3)
    orders = _sell(real_inv, 20)
    for n, order in enumerate(orders[:4]):
        real_inv.reservations.record_payment(event_id=f"e{n}", result="failed" if n < 2 else "paid", order_id=order)
    for n in range(2):  # open holds die with the flush
        real_inv.reservations.reserve(f"holder-{n}", {"HOT": 2})
    persist_now(real_inv, pg_sessions)

    delete_prefix(real_inv.redis, key_prefix)  # Redis lost everything of ours (never FLUSHALL a shared server)

    assert _try_reserve(real_inv, "early") == "product_not_found"
    during: list[str] = []
    restore = recovery_module.restore_order_records
    def restore_watched(inv, sessions, skus):  # noqa: ANN001, ANN202 - HOT's partition is mid-rebuild here
        if "HOT" in skus:  # on a cluster every partition is rebuilt in turn: watch HOT's
            during.append(_try_reserve(real_inv, "during"))
        return restore(inv, sessions, skus)

    monkeypatch.setattr(recovery_module, "restore_order_records", restore_watched)

    check = check_recovery(real_inv, pg_sessions)

    assert check.state == "rebuilt" and "missing" in check.reason
    assert during == ["sale_not_active"]
    level = stock(real_inv)
    assert (level.total, level.sold, level.held, level.available) == (50, 18, 0, 32)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda n: _try_reserve(real_inv, f"new-{n}"), range(45)))
    assert outcomes.count("held") == 32 and outcomes.count("sold_out") == 13
    # An order from before the flush can still fail its payment: its stock comes back exactly once.
    real_inv.reservations.record_payment(event_id="late", result="failed", order_id=orders[10])
    real_inv.reservations.record_payment(event_id="late", result="failed", order_id=orders[10])
    assert stock(real_inv).available == 1
    assert_invariant(stock(real_inv))
    persist_now(real_inv, pg_sessions)
    assert run_reconciliation(real_inv, pg_sessions, repair=True, full=True).clean
    assert check_recovery(real_inv, pg_sessions).state == "ok"


def test_a_rolled_back_snapshot_is_detected_and_rebuilt_from_postgres(real_inv: Inventory, pg_sessions,
                                                                      key_prefix: str) -> None:
    check_recovery(real_inv, pg_sessions)
    make_product(real_inv, "HOT", stock=10)
    _sell(real_inv, 2)
    persist_now(real_inv, pg_sessions)
    snapshot = {key: real_inv.redis.dump(key) for key in real_inv.redis.scan_iter(match=f"{key_prefix}:*")}
    _sell(real_inv, 3, start=2)
    persist_now(real_inv, pg_sessions)
    delete_prefix(real_inv.redis, key_prefix)
    for key, value in snapshot.items():  # Redis restarts from the older snapshot
        real_inv.redis.restore(key, 0, value)
    assert stock(real_inv).sold == 2

    check = check_recovery(real_inv, pg_sessions)

    assert check.state == "rebuilt" and "rolled back" in check.reason
    assert (stock(real_inv).sold, stock(real_inv).available) == (5, 5)
    assert check_recovery(real_inv, pg_sessions).state == "ok"


def test_a_healthy_redis_is_left_alone(real_inv: Inventory, pg_sessions) -> None:
    assert check_recovery(real_inv, pg_sessions).state == "initialized"
    make_product(real_inv, "HOT", stock=4)
    _sell(real_inv, 1)
    persist_now(real_inv, pg_sessions)
    version = stock(real_inv).version
    assert check_recovery(real_inv, pg_sessions).state == "ok"
    assert stock(real_inv).version == version


def test_rebuilding_chosen_skus_keeps_open_holds_and_an_admin_pause(real_inv: Inventory, pg_sessions) -> None:
    make_product(real_inv, "HOT", stock=10, limit=4)
    make_product(real_inv, "TEE", stock=3)
    real_inv.catalog.configure("TEE", paused=True)
    _sell(real_inv, 2)
    held = real_inv.reservations.reserve("keeper", {"HOT": 3})
    persist_now(real_inv, pg_sessions)
    real_inv.redis.hset(real_inv.keys.sku("HOT").stock, mapping={"avail": 99, "sold": 0})

    report = rebuild_from_postgres(real_inv, pg_sessions, ["HOT", "TEE"])

    assert report.rebuilt == ("HOT", "TEE") and report.epoch == ""
    level = stock(real_inv)
    assert (level.total, level.available, level.held, level.sold) == (10, 5, 3, 2)
    with pytest.raises(SaleNotActive):
        real_inv.reservations.reserve("x", {"TEE": 1})
    # per-user limits still count what the buyer holds: 3 held + 2 more > 4
    with pytest.raises(InventoryError):
        real_inv.reservations.reserve("keeper", {"HOT": 2})
    # counted once: her light hold carries its 3 units, the rebuilt counts hold only the orders
    assert read_buyers(real_inv.redis, real_inv.keys.sku("HOT")) == {"b0": 1, "b1": 1, "keeper": 3}
    real_inv.reservations.reserve("keeper", {"HOT": 1})
    assert real_inv.reservations.checkout(held.id).status.value == "pending_payment"



@pytest.mark.parametrize("drain_lands", ["after_the_stream_read", "after_the_database_read"])
def test_a_drain_committing_during_the_check_is_not_mistaken_for_a_rollback(
        real_inv: Inventory, pg_sessions, monkeypatch: pytest.MonkeyPatch, drain_lands: str) -> None:
    # Found by bench/full_flow.py: under load the check rebuilt a healthy Redis, pausing every SKU.
    assert check_recovery(real_inv, pg_sessions).state == "initialized"
    make_product(real_inv, "HOT", stock=10)
    persist_now(real_inv, pg_sessions)
    drained: list[str] = []

    def a_worker_persists_a_new_checkout() -> None:
        if not drained:
            drained.extend(_sell(real_inv, 1))
            persist_now(real_inv, pg_sessions)

    read_stream = recovery_module.stream_last_id

    def stream_read_then_drain(inv: Inventory, part):  # noqa: ANN001, ANN202
        last = read_stream(inv, part)
        if drain_lands == "after_the_stream_read":
            a_worker_persists_a_new_checkout()
        return last

    @contextmanager
    def database_read_then_drain():  # noqa: ANN202
        with pg_sessions() as session:
            yield session
        if drain_lands == "after_the_database_read":
            a_worker_persists_a_new_checkout()

    monkeypatch.setattr(recovery_module, "stream_last_id", stream_read_then_drain)
    monkeypatch.setattr(recovery_module, "rebuild_from_postgres",
                        lambda *a, **k: pytest.fail("a healthy Redis was rebuilt"))
    assert check_recovery(real_inv, database_read_then_drain).state == "ok"
    assert len(drained) == 1 and stock(real_inv).sold == 1


def test_the_recovery_lock_is_short_and_renewed_before_each_sku_of_a_rebuild(
        real_inv: Inventory, pg_sessions, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_recovery(real_inv, pg_sessions).state == "initialized"
    for sku in ("HOT", "TEE"):
        make_product(real_inv, sku, stock=5)
    persist_now(real_inv, pg_sessions)
    delete_prefix(real_inv.redis, key_prefix)
    ttls: list[int] = []
    rebuild_sku = recovery_module._rebuild_sku
    monkeypatch.setattr(recovery_module, "_rebuild_sku", lambda inv, sessions, sku: (
        ttls.append(inv.redis.pttl(inv.keys.scoped("lock:recovery"))), rebuild_sku(inv, sessions, sku))[1])

    assert check_recovery(real_inv, pg_sessions).state == "rebuilt"

    # A check cut off by a Redis stall keeps the next one out for at most 20 s, not minutes.
    assert len(ttls) == 2 and all(15_000 < ttl <= 20_000 for ttl in ttls)


def test_a_restored_older_snapshot_is_detected_even_after_new_writes_moved_the_outbox_on(
        real_inv: Inventory, pg_sessions, key_prefix: str) -> None:
    """The chaos suite's finding (CHAOS.md): the first write after a restore gets a stream id past every
    persisted one, so comparing last ids alone missed the rollback; the persisted entry must be either
    deleted (largest deleted id) or still in the stream."""
    check_recovery(real_inv, pg_sessions)
    make_product(real_inv, "HOT", stock=3)
    persist_now(real_inv, pg_sessions)
    snapshot = {key: real_inv.redis.dump(key) for key in real_inv.redis.scan_iter(match=f"{key_prefix}:*")}
    for buyer in ("alice", "bob"):  # sold and persisted after the snapshot
        real_inv.reservations.checkout(real_inv.reservations.reserve(buyer, {"HOT": 1}).id)
    persist_now(real_inv, pg_sessions)
    delete_prefix(real_inv.redis, key_prefix)
    for key, value in snapshot.items():  # Redis restarts from the older snapshot
        real_inv.redis.restore(key, 0, value)
    real_inv.reservations.checkout(real_inv.reservations.reserve("carol", {"HOT": 1}).id)  # a new write

    check = check_recovery(real_inv, pg_sessions)
    assert check.state == "rebuilt" and "rolled back" in check.reason
    persist_now(real_inv, pg_sessions)
    level = stock(real_inv)
    assert (level.total, level.sold, level.available) == (3, 3, 0)  # alice, bob (from PostgreSQL) and carol
    assert check_recovery(real_inv, pg_sessions).state == "ok"


def test_a_pending_order_rebuilt_after_a_flush_keeps_a_payment_deadline_no_extension_could_pass(
        real_inv: Inventory, pg_sessions, key_prefix: str) -> None:
    """Extensions are not in PostgreSQL: the rebuilt deadline is checkout + the lifetime cap, so an
    extended payment (a buyer in 3-D Secure) is not expired early, and an unpaid order still expires."""
    assert check_recovery(real_inv, pg_sessions).state == "initialized"
    make_product(real_inv, "HOT", stock=10)
    pending, paid = _sell(real_inv, 2)
    real_inv.reservations.record_payment(event_id="p", result="paid", order_id=paid)
    order = real_inv.reservations.get_order(pending)
    real_inv.reservations.extend(order.reservation_id, seconds=real_inv.settings.payment_ttl_seconds + 600,
                                 extension_id="3ds", clamp=True)
    extended = real_inv.reservations.get_order(pending).payment_due_at
    cap = order.created_at + timedelta(seconds=real_inv.settings.max_payment_lifetime_seconds)
    assert order.payment_due_at < extended <= cap
    persist_now(real_inv, pg_sessions)
    delete_prefix(real_inv.redis, key_prefix)

    assert check_recovery(real_inv, pg_sessions).state == "rebuilt"
    assert real_inv.reservations.get_order(pending).payment_due_at == cap
    real_inv.ctx.clock.advance(real_inv.settings.payment_ttl_seconds + 601)  # type: ignore[attr-defined]
    real_inv.reservations.expire_due()
    assert real_inv.reservations.get_order(pending).status.value == "pending_payment"  # past the extension, within the cap
    real_inv.ctx.clock.advance(real_inv.settings.max_payment_lifetime_seconds)  # type: ignore[attr-defined]
    real_inv.reservations.expire_due()  # the rebuilt order is in the sweep's index again
    assert real_inv.reservations.get_order(pending).status.value == "payment_expired"
    assert real_inv.reservations.get_order(paid).status.value == "paid"
    level = stock(real_inv)
    assert (level.sold, level.available) == (1, 9)
    persist_now(real_inv, pg_sessions)
    assert run_reconciliation(real_inv, pg_sessions, repair=False, full=True).clean


def test_a_basket_whose_home_kept_no_lines_is_rebuilt_with_its_home_and_deadline(
        real_redis, settings, clock, pg_sessions, key_prefix: str) -> None:  # noqa: ANN001
    """An amend may move every line out of the home partition; the rebuild still restores the home record
    (the order's commit point, its payment deadline and its list of parts)."""
    inv = Inventory(real_redis, settings.with_overrides(redis_partitions=8), clock)
    assert check_recovery(inv, pg_sessions).state == "initialized"
    home_sku, other = sorted(skus_in_distinct_partitions(inv.keys, 2))  # the smallest SKU picks the home
    for sku in (home_sku, other):
        make_product(inv, sku, stock=3)
    held = inv.reservations.reserve("alice", {home_sku: 1, other: 1})
    inv.reservations.amend(held.id, {home_sku: 0})
    order = inv.reservations.checkout(held.id)
    persist_now(inv, pg_sessions)
    delete_prefix(inv.redis, key_prefix)

    assert check_recovery(inv, pg_sessions).state == "rebuilt"
    assert inv.reservations.get_order(order.id).status.value == "pending_payment"
    clock.advance(inv.settings.max_payment_lifetime_seconds + 1)
    inv.reservations.expire_due()
    assert inv.reservations.get_order(order.id).status.value == "payment_expired"
    assert (stock(inv, other).available, stock(inv, other).sold) == (3, 0)
    persist_now(inv, pg_sessions)
    assert run_reconciliation(inv, pg_sessions, repair=False, full=True).clean
