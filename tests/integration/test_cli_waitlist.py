"""`flashstock waitlist show|leave|serve` on real Redis."""

from __future__ import annotations

from inventory import Inventory
from tests.helpers import make_product
from tests.integration.cli_support import cli, cli_env, cli_json, db, live  # noqa: F401


def test_show_leave_and_serve_a_waitlist(cli, cli_json, live: Inventory) -> None:
    make_product(live, "HOT", stock=1)
    held = live.reservations.reserve("alice", {"HOT": 1})
    live.waitlists.join("HOT", "bob", 1)
    live.waitlists.join("HOT", "carol", 1)
    shown = cli_json("waitlist", "show", "HOT")
    assert (shown["waiting"], shown["units_wanted"]) == (2, 2)
    assert [e["user_id"] for e in shown["head"]] == ["bob", "carol"]
    assert "bob" in cli("waitlist", "show", "HOT").stdout
    assert cli_json("waitlist", "leave", "HOT", "bob")["left"] == "waiting"
    live.reservations.release(held.id)
    assert cli_json("waitlist", "serve")["offered"] == 1
    assert live.waitlists.get("HOT", "carol").status == "offered"


def test_bad_waitlist_commands_are_clear_errors(cli, cli_json, live: Inventory) -> None:
    assert cli_json("waitlist", "show", "NOPE", code=2)["error"]["code"] == "product_not_found"
    make_product(live, "HOT", stock=1)
    assert cli_json("waitlist", "leave", "HOT", "nobody", code=2)["error"]["code"] == "waitlist_entry_not_found"
    assert cli("waitlist", "show", "HOT", "--limit", "0", code=2).stderr
