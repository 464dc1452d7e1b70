"""`python -m bench.cpu_ab`: one short round per target prints a CPU figure for each (figures are not asserted)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import server_unavailable

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_ab_measures_each_target_including_one_from_another_checkout() -> None:
    for tool in ("redis-server", "wrk"):
        if shutil.which(tool) is None:
            server_unavailable(tool, FileNotFoundError("not on PATH; scripts/test installs it"))
    proc = subprocess.run([sys.executable, "-m", "bench.cpu_ab", "--targets", f"ceiling,ceiling@{ROOT}",
                           "--rounds", "1", "--seconds", "1", "--units", "0", "--connections", "4"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    for spec in ("ceiling", f"ceiling@{ROOT}"):
        assert re.search(rf"^{re.escape(spec)}\s+median: total\s+[\d.]+ µs", proc.stdout, re.M), proc.stdout
