"""`flashstock status` and `flashstock holds` on real Redis and PostgreSQL."""

from __future__ import annotations

import json
import time

from inventory import Inventory
from tests.clocks import ManualClock
from tests.helpers import make_product
from tests.integration.cli_support import cli, cli_env, cli_json, db, live, run_process  # noqa: F401


def _at(live: Inventory, ms: int) -> Inventory:
    """The same Redis and prefix with the clock fixed at `ms`."""
    return Inventory(live.redis, live.settings, ManualClock(ms))


def test_status_shows_counters_persisted_figures_and_sale_state(cli, cli_json, live: Inventory, tmp_path) -> None:
    (tmp_path / "c.csv").write_text("sku,name,price,stock\nHOT,Hot,100,10\nCOLD,Cold,100,3\n")
    cli("catalog", "import", str(tmp_path / "c.csv"))
    live.reservations.checkout(live.reservations.reserve("a", {"HOT": 2}).id)
    live.reservations.reserve("b", {"HOT": 1})
    cli("sale", "pause", "COLD")
    rows = {r["sku"]: r for r in cli_json("status")}
    hot = rows["HOT"]
    assert (hot["total"], hot["available"], hot["held"], hot["sold"], hot["open_holds"]) == (10, 7, 1, 2, 1)
    assert (hot["persisted_total"], hot["state"]) == (10, "active")
    assert rows["COLD"]["state"] == "paused"
    one = cli_json("status", "HOT")
    assert one["sku"] == "HOT" and one["held"] == 1
    table = cli("status", "HOT").stdout
    assert "reservations_per_minute" in table and "persisted_total" in table


def test_status_counts_reservations_in_the_current_minute(cli_json, live: Inventory) -> None:
    make_product(live, "HOT", stock=100)
    minute_start = time.time_ns() // 1_000_000 // 60_000 * 60_000
    early = _at(live, minute_start)
    for n in range(5):
        early.reservations.reserve(f"u{n}", {"HOT": 1}, ttl_seconds=3600)
    assert cli_json("status", "HOT", "--no-db")["reservations_per_minute"] == 5


def test_status_watch_refreshes(cli, live: Inventory) -> None:
    make_product(live, "HOT", stock=10)
    out = cli("status", "HOT", "--watch", "--interval", "0.1", "--iterations", "3", "--json").stdout
    snapshots = [json.loads(line) for line in out.splitlines()]
    assert len(snapshots) == 3 and all(s[0]["total"] == 10 for s in snapshots)
    assert "HOT" in cli("status", "--watch", "--interval", "0.1", "--iterations", "2").stdout


def test_status_of_an_unknown_sku_is_an_error(cli_json, live: Inventory) -> None:
    assert cli_json("status", "NOPE", code=2)["error"]["code"] == "product_not_found"
    assert cli_json("status", "no such", code=2)["error"]["code"] == "invalid_argument"


def test_holds_list_and_release_one(cli, cli_json, live: Inventory) -> None:
    make_product(live, "HOT", stock=10)
    first = live.reservations.reserve("a", {"HOT": 2})
    live.reservations.reserve("b", {"HOT": 3})
    listed = cli_json("holds", "list", "HOT")
    assert sorted((h["user_id"], h["qty"]) for h in listed) == [("a", 2), ("b", 3)]  # same expiry ms: any order
    assert cli_json("holds", "release", first.id)["status"] == "released"
    assert live.catalog.get("HOT").stock.available == 7
    assert [h["user_id"] for h in cli_json("holds", "list", "HOT")] == ["b"]
    assert cli_json("holds", "release", "r_nothere0000", code=2)["error"]["code"] == "reservation_not_found"
    assert cli_json("holds", "list", "NOPE", code=2)["error"]["code"] == "product_not_found"


def test_holds_expire_releases_exactly_the_expired_reservations(cli_json, live: Inventory) -> None:
    make_product(live, "HOT", stock=10)
    live.reservations.reserve("fresh", {"HOT": 2}, ttl_seconds=600)
    past = _at(live, time.time_ns() // 1_000_000 - 600_000)  # (a reserve now would reclaim these lazily)
    for n in range(3):
        past.reservations.reserve(f"old{n}", {"HOT": 1}, ttl_seconds=60)
    result = cli_json("holds", "expire")
    assert (result["expired"], result["units_returned"]) == (3, 3)
    level = live.catalog.get("HOT").stock
    assert (level.available, level.held) == (8, 2)
    assert cli_json("holds", "expire")["expired"] == 0


def test_status_and_holds_run_as_real_processes(run_process, live: Inventory) -> None:
    make_product(live, "HOT", stock=10)
    done = run_process("status", "HOT", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["available"] == 10
    missing = run_process("holds", "list", "NOPE")
    assert missing.returncode == 2 and missing.stderr.startswith("error: product_not_found:")


def test_unreachable_redis_exits_3_with_a_code(cli_env: dict[str, str]) -> None:
    from click.testing import CliRunner

    from cli import main

    result = CliRunner().invoke(main, ["status", "HOT", "--json"],
                                env={**cli_env, "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"]["code"] == "unavailable"
    assert result.stderr.startswith("error: unavailable: Redis is not reachable")
