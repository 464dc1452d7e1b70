"""The chaos suite end to end at smoke size (`python -m chaos --smoke`): a few faults on the real stack,
every invariant checked and decided by non-zero counts, so the harness cannot rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import server_unavailable

ROOT = Path(__file__).resolve().parents[2]
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"  # where chaos/stack.py creates its database
TIMEOUT_S = 280
# The counts that must be non-zero for an invariant to have decided anything.
DECIDING = {"I1": ["skus", "units_total"], "I2": ["stock", "units_sold"],
            "I3": ["checkouts_202", "pg_orders", "payments_acked", "pg_payment_events", "keys"],
            "I4": ["user_sku_pairs"], "I5": ["answers", "errors"], "I6": ["bound_s"]}

pytestmark = [pytest.mark.redis_server, pytest.mark.postgres, pytest.mark.timeout(TIMEOUT_S + 30)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict]:
    """One smoke run; (process, its JSON results)."""
    if shutil.which("redis-server") is None:
        server_unavailable("redis-server", FileNotFoundError("not on PATH; scripts/services.sh installs it"))
    try:
        psycopg2.connect(PG_DSN, connect_timeout=5).close()
    except psycopg2.OperationalError as error:
        server_unavailable("PostgreSQL", error)
    out = tmp_path_factory.mktemp("chaos-smoke")
    proc = subprocess.run([sys.executable, "-m", "chaos", "--smoke", "--out", str(out), "--name", "smoke"],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    path = out / "smoke.json"
    assert path.exists(), f"no results; stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc, json.loads(path.read_text())


def test_chaos_smoke_exits_zero_with_every_invariant_held(smoke: tuple[subprocess.CompletedProcess, dict]) -> None:
    proc, doc = smoke
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert doc["ok"] is True
    assert len(doc["scenarios"]) >= 3


def test_chaos_smoke_decides_every_invariant_with_non_zero_counts(
        smoke: tuple[subprocess.CompletedProcess, dict]) -> None:
    _, doc = smoke
    for row in doc["scenarios"]:
        assert row["error"] == "", row["error"]
        assert row["acknowledged"] > 0 and row["recovery_s"] is not None
        assert set(DECIDING) <= set(row["invariants"]), row["scenario"]
        for name, counts in DECIDING.items():
            verdict = row["invariants"][name]
            assert verdict["ok"], (row["scenario"], name, verdict["problems"])
            assert all(verdict["counts"][c] > 0 for c in counts), (row["scenario"], name, verdict["counts"])
        assert row["invariants"]["I5"]["counts"]["status_500"] == 0
