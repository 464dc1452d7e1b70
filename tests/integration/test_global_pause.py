"""Issue 15: one global switch pauses every sale, SKUs created afterwards included (core, API, CLI)."""

from __future__ import annotations

import pytest

from inventory import Inventory
from inventory.errors import InvalidArgument, SaleNotActive
from inventory.models import SaleState
from inventory.sale_admin import global_paused, set_global_pause
from tests.helpers import assert_invariant, make_product, stock
from tests.integration.cli_support import cli, cli_env, cli_json, db, live  # noqa: F401


def test_the_switch_refuses_holds_on_every_sku_and_keeps_per_sku_settings(inv: Inventory) -> None:
    make_product(inv, "A", stock=5)
    make_product(inv, "B", stock=5)
    inv.catalog.configure("B", paused=True)
    held = inv.reservations.reserve("alice", {"A": 1})
    set_global_pause(inv, True)
    make_product(inv, "NEW", stock=5)  # created while everything is paused
    for sku in ("A", "NEW"):
        with pytest.raises(SaleNotActive) as refused:
            inv.reservations.reserve("bob", {sku: 1})
        assert refused.value.details["reason"] == "paused_globally"
        assert inv.catalog.get(sku).sale_state is SaleState.PAUSED_GLOBALLY
    with pytest.raises(SaleNotActive):
        inv.reservations.amend(held.id, {"A": 2})
    inv.reservations.amend(held.id, {"A": 1, "NEW": 0})  # nothing grows: allowed
    assert inv.reservations.checkout(held.id).status.value == "pending_payment"  # open holds still check out
    set_global_pause(inv, False)
    assert not global_paused(inv)
    inv.reservations.reserve("bob", {"NEW": 1})
    with pytest.raises(SaleNotActive) as still:
        inv.reservations.reserve("bob", {"B": 1})
    assert still.value.details["reason"] == "paused"  # its own pause outlives the global one
    for sku in ("A", "B", "NEW"):
        assert_invariant(stock(inv, sku))


def test_recovering_wins_over_the_switch(inv: Inventory) -> None:
    make_product(inv, "A", stock=5)
    inv.catalog.set_recovering("A", True)
    set_global_pause(inv, True)
    assert inv.catalog.get("A").sale_state is SaleState.RECOVERING


def test_the_switch_takes_only_a_boolean(inv: Inventory) -> None:
    with pytest.raises(InvalidArgument):
        set_global_pause(inv, "yes")  # type: ignore[arg-type]
    assert not global_paused(inv)


def test_cli_pause_all_is_the_global_switch_and_status_shows_it(cli_json, live: Inventory) -> None:
    make_product(live, "HOT", stock=5)
    rows = cli_json("sale", "pause", "--all")
    assert rows[0]["sku"] == "*" and rows[0]["state"] == "paused_globally"
    make_product(live, "LATER", stock=5)
    with pytest.raises(SaleNotActive):
        live.reservations.reserve("bob", {"LATER": 1})
    states = {row["sku"]: row["state"] for row in cli_json("status", "--no-db")}
    assert states == {"HOT": "paused_globally", "LATER": "paused_globally"}
    assert cli_json("sale", "resume", "--all")[0]["state"] == "active"
    live.reservations.reserve("bob", {"LATER": 1})


def test_the_switch_is_persisted_and_restored_by_a_rebuild_after_redis_lost_everything(
        real_inv: Inventory, pg_sessions) -> None:
    from inventory.persistence import persist_now, persisted_sale_switch
    from inventory.recovery import rebuild_from_postgres
    from tests.conftest import delete_prefix

    make_product(real_inv, "A", stock=5)
    set_global_pause(real_inv, True)
    persist_now(real_inv, pg_sessions)
    with pg_sessions() as session:
        assert persisted_sale_switch(session)
    delete_prefix(real_inv.redis, real_inv.settings.key_prefix)  # a restart without persistence
    rebuild_from_postgres(real_inv, pg_sessions)
    assert global_paused(real_inv)
    with pytest.raises(SaleNotActive):
        real_inv.reservations.reserve("bob", {"A": 1})
    set_global_pause(real_inv, False)
    persist_now(real_inv, pg_sessions)
    with pg_sessions() as session:
        assert not persisted_sale_switch(session)
    real_inv.reservations.reserve("bob", {"A": 1})
