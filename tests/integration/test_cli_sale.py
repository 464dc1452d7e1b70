"""`flashstock sale schedule|pause|resume|limit` on real Redis and PostgreSQL."""

from __future__ import annotations

import pytest

from inventory import Inventory
from inventory.errors import LimitExceeded, SaleNotActive
from tests.helpers import make_product
from tests.integration.cli_support import cli, cli_env, cli_json, db, live, product_row, run_process  # noqa: F401


def test_schedule_sets_the_window_and_persists_it(cli_json, live: Inventory, db) -> None:
    make_product(live, "HOT")
    rows = cli_json("sale", "schedule", "HOT", "--start", "2031-05-01T10:00:00+02:00", "--end",
                    "2031-05-01T09:00:00Z")
    assert rows[0]["applied"] and rows[0]["state"] == "not_started"
    product = live.catalog.get("HOT")
    assert product.sale_starts_at.isoformat() == "2031-05-01T08:00:00+00:00"
    assert product.sale_ends_at.isoformat() == "2031-05-01T09:00:00+00:00"
    assert product_row(db, "HOT").ends_at_ms == int(product.sale_ends_at.timestamp() * 1000)
    assert cli_json("sale", "schedule", "HOT", "--start", "now", "--end", "+1h")[0]["state"] == "active"
    assert cli_json("sale", "schedule", "HOT", "--start", "open", "--end", "open")[0]["state"] == "active"


@pytest.mark.parametrize("args", [
    ("--start", "+2h", "--end", "+1h"),
    ("--start", "2031-01-01T00:00:00Z", "--end", "2031-01-01T00:00:00Z"),
    ("--end", "2020-01-01T00:00:00Z"),  # before the live start below
    ("--start", "2031-01-01T00:00:00"),  # no timezone
    ("--start", "soon"),
    (),
])
def test_bad_windows_are_refused_and_change_nothing(cli_json, live: Inventory, args) -> None:
    make_product(live, "HOT")
    live.catalog.configure("HOT", starts_at=None, ends_at=None)
    cli_json("sale", "schedule", "HOT", "--start", "2030-01-01T00:00:00Z")
    version = live.catalog.get("HOT").version
    assert cli_json("sale", "schedule", "HOT", *args, code=2)["error"]["code"] == "invalid_argument"
    assert live.catalog.get("HOT").version == version


def test_pause_stops_new_reservations_but_checkout_of_holds_continues(cli_json, live: Inventory) -> None:
    make_product(live, "HOT", stock=5)
    hold = live.reservations.reserve("a", {"HOT": 1})
    assert cli_json("sale", "pause", "HOT")[0]["state"] == "paused"
    with pytest.raises(SaleNotActive):
        live.reservations.reserve("b", {"HOT": 1})
    assert live.reservations.checkout(hold.id).status.value == "pending_payment"
    assert cli_json("sale", "pause", "HOT")[0]["note"] == "already paused"
    assert cli_json("sale", "resume", "HOT")[0]["state"] == "active"
    live.reservations.reserve("b", {"HOT": 1})


def test_pause_and_resume_all_skus_leave_a_recovering_sku_alone(cli_json, live: Inventory) -> None:
    for sku in ("A", "B", "C"):
        make_product(live, sku)
    live.catalog.set_recovering("C", True)
    assert cli_json("sale", "pause", "--all")[0]["state"] == "paused_globally"
    rows = {r["sku"]: r for r in cli_json("status", "--no-db")}
    assert [rows[s]["state"] for s in ("A", "B", "C")] == ["paused_globally", "paused_globally", "recovering"]
    cli_json("sale", "resume", "--all")
    rows = {r["sku"]: r for r in cli_json("status", "--no-db")}
    assert [rows[s]["state"] for s in ("A", "B", "C")] == ["active", "active", "recovering"]


def test_limit_sets_the_per_user_limit(cli_json, live: Inventory) -> None:
    make_product(live, "HOT", stock=10)
    cli_json("sale", "limit", "HOT", "--per-user", "1")
    live.reservations.reserve("a", {"HOT": 1})
    with pytest.raises(LimitExceeded):
        live.reservations.reserve("a", {"HOT": 1})
    assert cli_json("sale", "limit", "HOT", "--per-user", "-1", code=2)["error"]["code"] == "invalid_argument"


def test_sale_commands_validate_targets_and_versions(cli_json, live: Inventory) -> None:
    make_product(live, "HOT")
    version = live.catalog.get("HOT").version
    assert cli_json("sale", "pause", "NOPE", code=2)["error"]["code"] == "product_not_found"
    assert cli_json("sale", "pause", code=2)["error"]["code"] == "invalid_argument"
    assert cli_json("sale", "pause", "HOT", "--all", code=2)["error"]["code"] == "invalid_argument"
    error = cli_json("sale", "pause", "HOT", "--expect-version", str(version + 5), code=2)["error"]
    assert error["code"] == "version_conflict"
    assert cli_json("sale", "pause", "HOT", "--expect-version", str(version))[0]["applied"]


@pytest.mark.single_node("the same commands run in process on the cluster; this checks the console script's wiring")
def test_sale_commands_run_as_real_processes(run_process, live: Inventory) -> None:
    make_product(live, "HOT")
    assert run_process("sale", "pause", "HOT").returncode == 0
    refused = run_process("sale", "schedule", "HOT", "--start", "+2h", "--end", "+1h")
    assert refused.returncode == 2 and "error: invalid_argument: The sale must end after it starts." in refused.stderr
    assert live.catalog.get("HOT").paused
