"""`flashstock reconcile` and `flashstock rebuild` on real Redis and PostgreSQL."""

from __future__ import annotations

import pytest
from pathlib import Path

from inventory import Inventory
from inventory.models import SaleState
from inventory.persistence import persist_now
from inventory.sale_status import read_status
from tests.conftest import delete_prefix
from tests.helpers import assert_invariant
from tests.integration.cli_support import cli, cli_env, cli_json, db, live, run_process, write  # noqa: F401

CATALOG = "sku,name,price,currency,stock\nHOT,Hot,1000,USD,20\nCOLD,Cold,500,USD,5\n"


def _seed(cli, live: Inventory, db, tmp_path: Path) -> str:
    """Import, sell 3 HOT, hold 2 HOT, persist the outbox; returns the order id."""
    cli("catalog", "import", str(write(tmp_path / "c.csv", CATALOG)))
    order = live.reservations.checkout(live.reservations.reserve("buyer", {"HOT": 3}).id)
    live.reservations.reserve("holder", {"HOT": 2}, ttl_seconds=600)
    persist_now(live, db)
    return order.id


def test_reconcile_reports_drift_repairs_it_and_lists_runs(cli, cli_json, live: Inventory, db,
                                                           tmp_path: Path) -> None:
    _seed(cli, live, db, tmp_path)
    assert cli_json("reconcile", "run", "--full")["clean"]
    live.redis.hincrby(live.keys.sku("HOT").stock, "avail", 4)  # drift: phantom units
    live.redis.hincrby(live.keys.sku("HOT").stock, "total", 4)
    live.redis.sadd(live.keys.of_sku("HOT").dirty, "HOT")
    found = cli_json("reconcile", "run")
    assert (found["clean"], found["skus_drifted"], found["skus_repaired"]) == (False, 1, 0)
    assert found["drifts"][0]["sku"] == "HOT" and found["drifts"][0]["redis"].startswith("total 24 ")
    assert "run again with --repair" in cli("reconcile", "run").stdout
    repaired = cli_json("reconcile", "run", "--repair")
    assert (repaired["skus_repaired"], repaired["units_repaired"] > 0) == (1, True)
    level = live.catalog.get("HOT").stock
    assert (level.total, level.available, level.held, level.sold) == (20, 15, 2, 3)
    assert cli_json("reconcile", "run", "--full")["clean"]
    runs = cli_json("reconcile", "history")
    assert [r["id"] for r in runs] == sorted((r["id"] for r in runs), reverse=True) and len(runs) == 5
    shown = cli_json("reconcile", "show", str(found["run_id"]))
    assert shown["skus_drifted"] == 1 and shown["drifts"][0]["sku"] == "HOT" and not shown["drifts"][0]["repaired"]
    assert cli_json("reconcile", "show", "999999", code=2)["error"]["code"] == "reconcile_run_not_found"


def test_rebuild_is_refused_while_the_sale_is_live_and_works_once_paused(cli, cli_json, live: Inventory, db,
                                                                        tmp_path: Path) -> None:
    order_id = _seed(cli, live, db, tmp_path)
    error = cli_json("rebuild", "HOT", code=2)["error"]
    assert (error["code"], error["details"]["skus"]) == ("sale_live", ["HOT"])
    cli("sale", "pause", "HOT")
    live.redis.delete(live.keys.sku("HOT").stock)  # Redis lost this SKU: its hash, and the one hold kept in it
    report = cli_json("rebuild", "HOT")
    assert (report["rebuilt"], report["failed"]) == (1, [])
    product = live.catalog.get("HOT")
    # A light SKU's holds are fields of its stock hash (inventory/holds.py): the lost hold's units are back
    assert (product.stock.total, product.stock.available, product.stock.held, product.stock.sold) == (20, 17, 0, 3)
    assert product.paused  # still paused as configured: the admin resumes
    assert live.reservations.get_order(order_id).status.value == "pending_payment"
    cli("sale", "resume", "HOT")
    live.reservations.reserve("after", {"HOT": 1})


def test_rebuild_all_restores_a_redis_that_lost_everything(cli, cli_json, live: Inventory, db,
                                                           tmp_path: Path) -> None:
    _seed(cli, live, db, tmp_path)
    assert cli_json("rebuild", "--all", code=2)["error"]["code"] == "sale_live"
    cli("sale", "pause", "--all")
    persist_now(live, db)
    delete_prefix(live.redis, live.settings.key_prefix)  # a restart without persistence
    report = cli_json("rebuild", "--all")
    assert report["rebuilt"] == 2 and report["epoch"] != "(unchanged)"
    hot, cold = live.catalog.get("HOT"), live.catalog.get("COLD")
    assert (hot.stock.total, hot.stock.sold, hot.name, hot.price) == (20, 3, "Hot", 1000)
    assert (cold.stock.total, cold.stock.available) == (5, 5)
    assert_invariant(hot.stock)
    assert hot.sale_state is cold.sale_state is SaleState.PAUSED_GLOBALLY  # the switch came back with Redis


def test_rebuild_validates_its_targets(cli_json, live: Inventory) -> None:
    assert cli_json("rebuild", "NOPE", code=2)["error"]["code"] == "product_not_found"
    assert cli_json("rebuild", code=2)["error"]["code"] == "invalid_argument"
    assert cli_json("rebuild", "A", "--all", code=2)["error"]["code"] == "invalid_argument"


@pytest.mark.single_node("the same commands run in process on the cluster; this checks the console script's wiring")
def test_reconcile_and_rebuild_run_as_real_processes(cli, run_process, live: Inventory, db,
                                                     tmp_path: Path) -> None:
    _seed(cli, live, db, tmp_path)
    assert run_process("reconcile", "run", "--full").returncode == 0
    refused = run_process("rebuild", "HOT")
    assert refused.returncode == 2 and refused.stderr.startswith("error: sale_live:")


def test_rebuild_of_a_split_sku_rebuilds_its_buckets_and_quotas(cli, cli_json, live: Inventory, db,
                                                                 tmp_path: Path) -> None:
    _seed(cli, live, db, tmp_path)
    cli("sale", "limit", "HOT", "--per-user", "5")
    cli("stock", "split", "HOT", "3")
    live.reservations.reserve("third", {"HOT": 1})
    assert cli_json("rebuild", "HOT", code=2)["error"]["code"] == "sale_live"
    cli("sale", "pause", "HOT")  # pauses every bucket of HOT
    persist_now(live, db)
    for name in live.buckets.layout("HOT", fresh=True).buckets:  # Redis lost every bucket
        live.redis.delete(live.keys.sku(name).stock)
    report = cli_json("rebuild", "HOT")
    assert report["failed"] == [] and report["rebuilt"] >= 3
    product = live.catalog.get("HOT")
    # the 3 held units were light holds, fields of the lost hashes (inventory/holds.py): they are back
    assert (product.buckets, product.stock.total, product.stock.held, product.stock.sold) == (3, 20, 0, 3)
    assert product.paused
    assert_invariant(product.stock)


def test_rebuild_keeps_a_busy_skus_holds_in_its_hold_buckets(cli, cli_json, live: Inventory, db,
                                                             tmp_path: Path) -> None:
    cli("catalog", "import", str(write(tmp_path / "c.csv", "sku,name,price,currency,stock\nBUSY,Busy,100,USD,100\n")))
    held = [live.reservations.reserve(f"u{i:02d}", {"BUSY": 1}, ttl_seconds=600) for i in range(30)]
    persist_now(live, db)
    assert cli_json("reconcile", "run", "--full")["clean"]
    cli("sale", "pause", "BUSY")
    live.redis.delete(live.keys.sku("BUSY").stock)  # the holds zset and hold buckets survive: 16 + 14 holds
    assert cli_json("rebuild", "BUSY")["rebuilt"] == 1
    product = live.catalog.get("BUSY")
    assert (product.stock.total, product.stock.available, product.stock.held) == (100, 70, 30)
    assert [s.open_holds for s in read_status(live, ["BUSY"])] == [30]
    cli("sale", "resume", "BUSY")
    live.reservations.release(held[-1].id)  # in a hold bucket
    assert live.catalog.get("BUSY").stock.held == 29 and [s.open_holds for s in read_status(live, ["BUSY"])] == [29]
    persist_now(live, db)
    assert cli_json("reconcile", "run", "--full")["clean"]
