"""`flashstock catalog import|export` on real Redis and PostgreSQL: validation, diff, reseed while live."""

from __future__ import annotations

import pytest
import json
import random
import threading
import time
from pathlib import Path

from inventory import Inventory
from inventory.errors import InventoryError
from tests.helpers import assert_invariant
from tests.integration.cli_support import (  # noqa: F401 - fixtures
    Cli,
    cli,
    cli_env,
    cli_json,
    db,
    live,
    persisted,
    product_row,
    run_process,
    write,
)

HEADER = "sku,name,price,currency,stock,per_user_limit,sale_starts_at,sale_ends_at\n"
CATALOG = HEADER + (
    "HP-1,Headphones,4999,USD,100,2,,\n"
    "SP-1,Speaker,2999,EUR,50,1,2030-01-01T10:00:00Z,2030-01-01T12:00:00Z\n"
    "CB-1,Cable,499,USD,1000,0,,\n"
)


def test_import_csv_creates_products_in_redis_and_postgres_with_ledger(cli_json, live: Inventory, db,
                                                                      tmp_path: Path) -> None:
    report = cli_json("catalog", "import", str(write(tmp_path / "c.csv", CATALOG)))
    assert (report["created"], report["updated"], report["failed"]) == (3, 0, 0)
    assert report["persisted"]["entries"] == 6  # one product_configured + one stock_adjusted each
    speaker = live.catalog.get("SP-1")
    assert (speaker.name, speaker.price, speaker.currency, speaker.per_user_limit) == ("Speaker", 2999, "EUR", 1)
    assert speaker.sale_starts_at.isoformat() == "2030-01-01T10:00:00+00:00"
    assert speaker.stock.total == speaker.stock.available == 50
    assert persisted(db, "SP-1") == (50, 0)
    row = product_row(db, "SP-1")
    assert (row.name, row.price, row.currency, row.starts_at_ms) == ("Speaker", 2999, "EUR", 1_893_492_000_000)


def test_import_json_and_json_lines_with_line_numbers(cli, cli_json, live: Inventory, tmp_path: Path) -> None:
    array = '[\n  {"sku": "J-1", "name": "One", "price": 100, "stock": 5},\n  {"sku": "J-2", "name": "Two", ' \
            '"price": 200, "stock": 6, "limit": 1}\n]\n'
    assert cli_json("catalog", "import", str(write(tmp_path / "a.json", array)))["created"] == 2
    lines = '{"sku": "J-3", "name": "Three", "price": 1, "stock": 1}\n\n{"sku": "J-4", "price": "x"}\n'
    error = cli_json("catalog", "import", str(write(tmp_path / "b.jsonl", lines)), code=2)["error"]
    assert error["code"] == "import_rejected"
    assert [(p["line"], p["field"], p["code"]) for p in error["details"]["problems"]] == [
        (3, "price", "invalid_integer")]
    assert live.catalog.get("J-2").per_user_limit == 1
    assert "J-3" not in live.catalog.all_skus()


def test_malformed_csv_reports_every_bad_row_and_applies_nothing(cli, cli_json, live: Inventory,
                                                                 tmp_path: Path) -> None:
    bad = HEADER + (
        "OK-1,Fine,100,USD,10,,,\n"
        "bad sku,Name,100,USD,10,,,\n"
        "OK-2,Name,19.99,usd,-4,,,\n"
        "OK-3,Name,100,USD,10,,2030-01-02T00:00:00Z,2030-01-01T00:00:00Z\n"
        "OK-4,Name,100,USD\n"
        "OK-1,Again,100,USD,10,,,\n"
        "OK-5,Name,100,USD,10,,tomorrow,\n"
    )
    path = write(tmp_path / "bad.csv", bad)
    error = cli_json("catalog", "import", str(path), code=2)["error"]
    found = [(p["line"], p["field"], p["code"]) for p in error["details"]["problems"]]
    assert found == [
        (3, "sku", "invalid_sku"),
        (4, "currency", "invalid_currency"), (4, "price", "invalid_integer"), (4, "stock", "negative"),
        (5, "sale_ends_at", "invalid_window"),
        (6, "row", "wrong_field_count"),
        (7, "sku", "duplicate_sku"),
        (8, "sale_starts_at", "invalid_time"),
    ]
    assert live.catalog.all_skus() == []
    human = cli("catalog", "import", str(path), code=2)
    assert "error: import_rejected: 8 problem(s) in the file; nothing was applied." in human.stderr
    assert "duplicate_sku" in human.stderr and "│ 7 " in human.stderr


def test_unreadable_or_headerless_files_are_rejected_with_a_code(cli_json, tmp_path: Path) -> None:
    assert cli_json("catalog", "import", str(tmp_path / "missing.csv"), code=2)["error"]["details"]["problems"][0][
        "code"] == "unreadable_file"
    unknown = write(tmp_path / "c.csv", "sku,colour\nA,red\n")
    assert cli_json("catalog", "import", str(unknown), code=2)["error"]["details"]["problems"][0][
        "code"] == "bad_header"
    assert cli_json("catalog", "import", str(write(tmp_path / "c.txt", "x")), code=2)["error"]["details"][
        "problems"][0]["code"] == "unknown_format"
    quoted = write(tmp_path / "q.csv", 'sku,name\nA,"unterminated\n')
    assert cli_json("catalog", "import", str(quoted), code=2)["error"]["details"]["problems"][0][
        "code"] == "malformed_csv"


def test_dry_run_shows_the_diff_against_live_and_changes_nothing(cli, cli_json, live: Inventory,
                                                                 tmp_path: Path) -> None:
    cli("catalog", "import", str(write(tmp_path / "c.csv", CATALOG)))
    version = live.catalog.get("HP-1").version
    changed = HEADER + "HP-1,Headphones,5999,USD,120,2,,\nSP-1,Speaker,2999,EUR,50,1,,\nNEW-1,New,10,USD,7,,,\n"
    path = write(tmp_path / "d.csv", changed)
    report = cli_json("catalog", "import", str(path), "--dry-run")
    assert report["summary"] == {"rows": 3, "new": 1, "changed": 1, "unchanged": 1, "stock_changes": 1,
                                 "price_changes": 1, "other_changes": 0, "live_not_in_file": 1}
    diff = {(d["sku"], d["field"]): (d["live"], d["new"]) for d in report["diff"]}
    assert diff[("HP-1", "price")] == (4999, 5999)
    assert diff[("HP-1", "stock")] == (100, 120)
    assert diff[("NEW-1", "stock")] == (None, 7)
    assert live.catalog.get("HP-1").version == version and live.catalog.get("HP-1").price == 4999
    assert "NEW-1" not in live.catalog.all_skus()
    table = cli("catalog", "import", str(path), "--dry-run").stdout
    assert "dry run: nothing applied" in table and "5999" in table


def test_reseed_sets_totals_without_clobbering_holds_or_sold_units(cli_json, live: Inventory, db,
                                                                   tmp_path: Path) -> None:
    cli_json("catalog", "import", str(write(tmp_path / "c.csv", CATALOG)))
    order = live.reservations.checkout(live.reservations.reserve("u1", {"HP-1": 2}).id)
    live.reservations.reserve("u2", {"HP-1": 1})
    report = cli_json("catalog", "import", str(write(tmp_path / "r.csv", HEADER + "HP-1,Headphones,4999,USD,40,2,,\n")))
    assert (report["updated"], report["failed"]) == (1, 0)
    level = live.catalog.get("HP-1").stock
    assert (level.total, level.available, level.held, level.sold) == (40, 37, 1, 2)
    assert live.reservations.get_order(order.id).status.value == "pending_payment"
    assert persisted(db, "HP-1") == (40, 2)


def test_reseed_below_held_plus_sold_is_rejected_with_its_line(cli_json, live: Inventory, tmp_path: Path) -> None:
    cli_json("catalog", "import", str(write(tmp_path / "c.csv", CATALOG)))
    live.reservations.reserve("u1", {"HP-1": 2})
    path = write(tmp_path / "r.csv", HEADER + "CB-1,Cable,499,USD,5,0,,\nHP-1,Headphones,4999,USD,1,2,,\n")
    problem = cli_json("catalog", "import", str(path), code=2)["error"]["details"]["problems"][0]
    assert (problem["line"], problem["sku"], problem["code"]) == (3, "HP-1", "stock_below_committed")
    assert live.catalog.get("CB-1").stock.total == 1000  # the good row was not applied either


def test_version_column_gives_compare_and_set(cli, cli_json, live: Inventory, tmp_path: Path) -> None:
    cli("catalog", "import", str(write(tmp_path / "c.csv", CATALOG)))
    exported = cli("catalog", "export", "--format", "csv").stdout
    edited = exported.replace("Headphones,4999", "Headphones,3999")
    live.catalog.adjust_stock("HP-1", add=1)  # another admin changes HP-1 meanwhile
    problem = cli_json("catalog", "import", str(write(tmp_path / "e.csv", edited)), code=2)["error"]["details"][
        "problems"][0]
    assert (problem["sku"], problem["code"]) == ("HP-1", "version_conflict")
    assert live.catalog.get("HP-1").price == 4999


def test_export_then_import_is_a_no_op(cli, cli_json, live: Inventory, tmp_path: Path) -> None:
    cli("catalog", "import", str(write(tmp_path / "c.csv", CATALOG)))
    versions = {p.sku: p.version for p in live.catalog.list()}
    for kind in ("csv", "json", "jsonl"):
        out = tmp_path / f"export.{kind}"
        cli("catalog", "export", str(out))
        report = cli_json("catalog", "import", str(out))
        assert report["summary"]["unchanged"] == 3 and report["updated"] == 0, kind
    assert {p.sku: p.version for p in live.catalog.list()} == versions


@pytest.mark.single_node("the same commands run in process on the cluster; this checks the console script's wiring")
def test_import_runs_as_a_real_process(run_process, live: Inventory, db, tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", CATALOG)
    done = run_process("catalog", "import", str(path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["created"] == 3
    assert live.catalog.get("CB-1").stock.total == 1000 and persisted(db, "CB-1") == (1000, 0)
    rejected = run_process("catalog", "import", str(write(tmp_path / "b.csv", HEADER + "X,,1,USD,-1,,,\n")))
    assert rejected.returncode == 2
    assert "error: import_rejected" in rejected.stderr and "Traceback" not in rejected.stderr


def test_reseed_under_concurrent_reservations_keeps_the_invariant_and_every_hold(cli, live: Inventory,
                                                                                 tmp_path: Path) -> None:
    skus = [f"LIVE-{i}" for i in range(4)]
    cli("catalog", "import", str(write(tmp_path / "0.csv", HEADER + "".join(
        f"{s},Item,100,USD,150,0,,\n" for s in skus))))
    held: list[tuple[str, str, int]] = []
    sold: list[tuple[str, int]] = []
    lock, stop = threading.Lock(), threading.Event()

    def buyer(n: int) -> None:
        rng = random.Random(n)
        for i in range(5000):
            if stop.is_set():
                return
            sku, qty = rng.choice(skus), rng.randint(1, 2)
            try:
                reservation = live.reservations.reserve(f"b{n}-{i}", {sku: qty}, ttl_seconds=600)
                if i % 3 == 0:
                    live.reservations.checkout(reservation.id)
                    with lock:
                        sold.append((sku, qty))
                else:
                    with lock:
                        held.append((reservation.id, sku, qty))
            except InventoryError:
                pass  # sold out between reseeds is expected

    threads = [threading.Thread(target=buyer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    while len(held) < 20:  # the reseeds must overlap a sale in progress
        time.sleep(0.005)
    for round_, total in enumerate((400, 700, 1000), start=1):
        cli("catalog", "import", str(write(tmp_path / f"{round_}.csv", HEADER + "".join(
            f"{s},Item,{100 + round_},USD,{total},0,,\n" for s in skus))))
    stop.set()
    for thread in threads:
        thread.join()

    assert held and sold
    for sku in skus:
        level = live.catalog.get(sku).stock
        assert_invariant(level)
        assert level.total == 1000
        assert level.held == sum(q for _, s, q in held if s == sku)
        assert level.sold == sum(q for s, q in sold if s == sku)
    members = {h.reservation_id for sku in skus for h in live.catalog.holds(sku, limit=10_000)}
    assert members == {rid for rid, _, _ in held}


def test_buckets_column_splits_and_a_reseed_of_a_split_sku_sets_the_sum(cli, cli_json, live: Inventory, db,
                                                                       tmp_path: Path) -> None:
    header = HEADER.rstrip("\n") + ",buckets\n"
    cli_json("catalog", "import", str(write(tmp_path / "c.csv", header + "HP-1,Headphones,4999,USD,100,2,,,4\n")))
    product = live.catalog.get("HP-1")
    assert (product.buckets, product.stock.total, product.stock.available) == (4, 100, 100)
    live.reservations.reserve("u1", {"HP-1": 2})
    report = cli_json("catalog", "import", str(write(tmp_path / "r.csv", header + "HP-1,Headphones,3999,USD,40,2,,,2\n")))
    assert (report["updated"], report["failed"]) == (1, 0)
    product = live.catalog.get("HP-1")
    assert (product.buckets, product.price, product.stock.total, product.stock.held) == (2, 3999, 40, 2)
    assert_invariant(product.stock)
    out = tmp_path / "export.csv"
    cli("catalog", "export", str(out))
    assert "HP-1@" not in out.read_text() and cli_json("catalog", "import", str(out))["updated"] == 0
    bad = cli_json("catalog", "import", str(write(tmp_path / "b.csv", header + "HP-1,Headphones,3999,USD,40,2,,,0\n")),
                   code=2)["error"]["details"]["problems"][0]
    assert (bad["field"], bad["code"]) == ("buckets", "invalid_integer")
