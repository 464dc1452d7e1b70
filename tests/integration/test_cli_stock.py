"""`flashstock stock set|add|remove|split` on real Redis and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from inventory import Inventory
from tests.helpers import assert_invariant, make_product
from tests.integration.cli_support import cli, cli_env, cli_json, db, live, persisted, run_process  # noqa: F401


def test_set_add_remove_change_the_total_and_write_the_ledger(cli_json, live: Inventory, db) -> None:
    make_product(live, "HOT", stock=10)
    assert cli_json("stock", "set", "HOT", "25")["total"] == 25
    assert cli_json("stock", "add", "HOT", "5")["available"] == 30
    level = cli_json("stock", "remove", "HOT", "12", "--reason", "damaged")
    assert (level["total"], level["available"]) == (18, 18)
    assert persisted(db, "HOT") == (18, 0)


def test_stock_changes_keep_open_holds_and_sold_units(cli_json, live: Inventory) -> None:
    make_product(live, "HOT", stock=10)
    live.reservations.checkout(live.reservations.reserve("a", {"HOT": 3}).id)
    live.reservations.reserve("b", {"HOT": 2})
    level = cli_json("stock", "set", "HOT", "6")
    assert (level["total"], level["available"], level["held"], level["sold"]) == (6, 1, 2, 3)
    assert_invariant(live.catalog.get("HOT").stock)


def test_total_below_held_plus_sold_is_refused(cli, cli_json, live: Inventory) -> None:
    make_product(live, "HOT", stock=10)
    live.reservations.reserve("a", {"HOT": 4})
    error = cli_json("stock", "set", "HOT", "3", code=2)["error"]
    assert (error["code"], error["details"]) == ("stock_below_committed", {"committed": 4, "requested": 3})
    assert cli("stock", "remove", "HOT", "7", code=2).stderr.startswith("error: stock_below_committed:")
    assert live.catalog.get("HOT").stock.total == 10


def test_expect_version_is_compare_and_set(cli_json, live: Inventory) -> None:
    make_product(live, "HOT", stock=10)
    version = live.catalog.get("HOT").version
    assert cli_json("stock", "add", "HOT", "1", "--expect-version", str(version))["version"] == version + 1
    error = cli_json("stock", "add", "HOT", "1", "--expect-version", str(version), code=2)["error"]
    assert (error["code"], error["details"]) == ("version_conflict", {"expected": version, "actual": version + 1})
    assert live.catalog.get("HOT").stock.total == 11


@pytest.mark.parametrize("args, code", [
    (("set", "HOT", "-5"), "invalid_argument"),
    (("add", "HOT", "-1"), "invalid_argument"),
    (("set", "NOPE", "5"), "product_not_found"),
    (("set", "bad sku", "5"), "invalid_argument"),
    (("add", "HOT", "1", "--reason", "no spaces"), "invalid_argument"),
    (("split", "HOT", "0"), "invalid_argument"),
    (("split", "HOT", "65"), "invalid_argument"),
    (("split", "NOPE", "2"), "product_not_found"),
])
def test_bad_stock_input_exits_with_a_code_and_changes_nothing(cli_json, live: Inventory, args, code) -> None:
    make_product(live, "HOT", stock=10)
    assert cli_json("stock", *args, code=2)["error"]["code"] == code
    assert live.catalog.get("HOT").stock.total == 10
    assert live.catalog.get("HOT").buckets == 1


def test_split_then_stock_commands_act_on_the_sum_of_the_buckets(cli_json, live: Inventory, db) -> None:
    make_product(live, "HOT", stock=12, limit=1)
    product = cli_json("stock", "split", "HOT", "3")
    assert product["buckets"] == 3 and product["stock"]["total"] == 12 and product["stock"]["available"] == 12
    live.reservations.reserve("a", {"HOT": 1})
    level = cli_json("stock", "remove", "HOT", "5")
    assert (level["total"], level["available"], level["held"]) == (7, 6, 1)
    assert cli_json("stock", "split", "HOT", "1")["stock"]["total"] == 7  # live shrink to one bucket
    assert_invariant(live.catalog.get("HOT").stock)
    with db() as session:  # PostgreSQL's ledger per bucket sums to the product's total
        rows = session.execute(text("SELECT sku, SUM(total_delta) FROM stock_ledger WHERE sku LIKE 'HOT@%' "
                                    "OR sku = 'HOT' GROUP BY sku")).all()
    assert sum(total for sku, total in rows if "@q" not in sku) == 7


@pytest.mark.single_node("the same commands run in process on the cluster; this checks the console script's wiring")
def test_stock_commands_run_as_real_processes(run_process, live: Inventory) -> None:
    make_product(live, "HOT", stock=10)
    assert run_process("stock", "add", "HOT", "5").returncode == 0
    refused = run_process("stock", "set", "HOT", "-5")
    assert refused.returncode == 2 and "error: invalid_argument: total must not be negative." in refused.stderr
    assert live.catalog.get("HOT").stock.total == 15
