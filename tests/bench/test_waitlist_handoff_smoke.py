"""`python -m bench.waitlist_handoff --smoke [--buckets 4]`: runs, and every unit ends paid (figures are not
asserted), on one SKU and on a SKU split into stock buckets."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import server_unavailable

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("buckets", [1, 4])
def test_waitlist_handoff_smoke_sells_every_unit_and_the_queue_gets_every_return(tmp_path: Path, buckets: int) -> None:
    if shutil.which("redis-server") is None:
        server_unavailable("redis-server", FileNotFoundError("not on PATH; scripts/services.sh installs it"))
    proc = subprocess.run([sys.executable, "-m", "bench.waitlist_handoff", "--smoke", "--out-dir", str(tmp_path),
                           "--buckets", str(buckets)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    name = "waitlist_handoff" if buckets == 1 else f"waitlist_handoff_b{buckets}"
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert result["buckets"] == buckets
    assert result["final"]["paid_orders"] == result["final"]["sold"] == result["size"]["units"]
    assert result["bot"]["won_while_buyers_waited"] == 0
    assert result["offered_units"] == result["returned_units"]
