"""The benchmark harness end to end at smoke size (`python -m bench --smoke`), so it cannot rot.

One harness run covers every scenario in SMOKE; each scenario then gets its own test of its result
file. To cover another scenario, add (name, result file, check) to SMOKE.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import psycopg2
import pytest

from tests.conftest import server_unavailable

ROOT = Path(__file__).resolve().parents[2]
PG_DSN = "host=127.0.0.1 port=5432 user=postgres"  # python -m bench's defaults (--pg-dsn, --pg-admin-db)
PG_ADMIN_DB = "test"
HOT_SKU_TARGETS = "flashstock,ceiling,pg_for_update"  # one PostgreSQL baseline keeps the shared code covered
TIMEOUT_S = 240

pytestmark = [pytest.mark.redis_server, pytest.mark.postgres]


def _no_failures(runs: list[dict]) -> None:
    assert runs, "no runs recorded"
    assert [r["failures"] for r in runs] == [[] for _ in runs]


def check_hot_sku(doc: dict) -> None:
    """Every target sold out its SKU exactly, without 5xx."""
    _no_failures(doc["runs"])
    assert {r["target"] for r in doc["runs"]} == set(HOT_SKU_TARGETS.split(","))
    for r in doc["runs"]:
        assert (r["sellout"]["oversell"], r["sellout"]["undersell"], r["load"]["status"]["5xx"]) == (0, 0, 0)
        assert r["sellout"]["sold_by_stock"] == r["sellout"]["units"]
        assert r["load"]["rps"] > 0 and r["load"]["latency_ms"]["p99"] is not None
        if r["load"]["generator"] == "wrk":  # every target echoes X-Request-ID: every answer timed on its own
            own, steady = r["load"]["latency_ms_per_request"], r["load"]["latency_ms_steady"]
            answered = sum(v for k, v in r["load"]["status"].items() if k != "transport_errors")
            assert own["answers"] == answered and 0 < own["p50"] <= own["p99"] <= own["max"]
            assert answered - r["connections"] - 2 <= steady["answers"] < answered
    assert doc["ratios"]["flashstock"]["ceiling"]


def check_browse_mix(doc: dict) -> None:
    """Both targets at every connection count: reads all 200, the head sold out, no oversell or undersell."""
    _no_failures(doc["runs"])
    assert {(r["target"], r["connections"]) for r in doc["runs"]} == {
        (t, c) for t in ("flashstock", "ceiling") for c in (8, 32)}
    for r in doc["runs"]:
        read, reserve = r["types"]["read"], r["types"]["reserve"]
        assert (r["skus"]["oversell"], r["skus"]["undersell"], read["5xx"], reserve["5xx"]) == (0, 0, 0, 0)
        assert set(read["status"]) == {"200"}
        assert reserve["status"]["201"] > 0 and reserve["error_codes"]["sold_out"] > 0
        assert r["skus"]["skus_sold_out"] > 0 and r["skus"]["skus"] == doc["config"]["skus"]
        for t in (read, reserve):
            assert t["answered"] > 0
            assert None not in (t["latency_ms"]["p50"], t["latency_ms"]["p95"], t["latency_ms"]["p99"])
    assert set(doc["ratios"]["flashstock_vs_ceiling"]) == {"8", "32"}


SMOKE: list[tuple[str, str, Callable[[dict], None]]] = [
    ("hot_sku", "smoke.json", check_hot_sku),
    ("browse_mix", "browse_mix.json", check_browse_mix),
]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """One `python -m bench --smoke` over every scenario in SMOKE; (process, out dir)."""
    for tool, installer in (("wrk", "scripts/test"), ("redis-server", "scripts/services.sh")):
        if shutil.which(tool) is None:
            server_unavailable(tool, FileNotFoundError(f"not on PATH; {installer} installs it"))
    try:
        psycopg2.connect(f"{PG_DSN} dbname={PG_ADMIN_DB}", connect_timeout=5).close()
    except psycopg2.OperationalError as error:
        server_unavailable("PostgreSQL", error)
    out = tmp_path_factory.mktemp("bench-smoke")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out-dir", str(out), "--scenarios",
         ",".join(name for name, _, _ in SMOKE), "--targets", HOT_SKU_TARGETS],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    return proc, out


def test_smoke_run_exits_zero(smoke_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    proc, _ = smoke_run
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"


@pytest.mark.parametrize("name, result_file, check", SMOKE, ids=[name for name, _, _ in SMOKE])
def test_smoke_scenario_reports_no_failures_and_its_figures(
    smoke_run: tuple[subprocess.CompletedProcess, Path], name: str, result_file: str,
    check: Callable[[dict], None],
) -> None:
    proc, out = smoke_run
    index = json.loads((out / "scenarios.json").read_text())
    assert index["smoke"] is True
    assert index["scenarios"][name]["failures"] == [], proc.stderr[-4000:]
    assert index["scenarios"][name]["summary"]
    check(json.loads((out / result_file).read_text()))
