"""bench/record_packing.py: the variants it runs are the product's script with packing on and off, and a
git revision's; a smoke run holds every reserve and reports both figures."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.record_packing import PACKING_ON, git_source, sources
from inventory.scripts import load_sources

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.redis_server


def test_the_variants_differ_only_in_packing():
    variants = sources(None)
    assert variants["packed"] == (load_sources()["reserve"].source, Path(load_sources()["reserve"].filename).stem)
    assert variants["keys"] == (variants["packed"][0].replace(PACKING_ON, "local PACKED_MAX = 0"), variants["packed"][1])
    assert "before" not in variants


def test_a_git_revisions_script_is_spliced_from_that_revision():
    head, layout = git_source("HEAD")
    assert layout.startswith("reserve-") and head.startswith("--[[\nreserve:") and "local function now_ms" in head
    assert not re.search(r"^--@include", head, re.M)


def test_a_smoke_run_holds_every_reserve_and_reports_both_variants(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.record_packing", "--smoke", "--out-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / "record_packing.json").read_text())
    assert set(result["evalsha_us_per_call"]["median"]) == {"packed", "keys"}
    assert all(v > 0 for v in result["evalsha_us_per_call"]["median"].values())
    assert result["used_memory_b_per_hold"]["median"]["packed"] < result["used_memory_b_per_hold"]["median"]["keys"]
    assert result["failures"] == [] and set(result["ratios"]) == {"packed / keys"}


@pytest.mark.parametrize("ref,layout", [("398d8a1", "reserve-4+3n+m"), ("e468582", "reserve-4+3n+m+1")])
def test_a_baseline_with_an_older_key_layout_is_called_with_its_own_keys(tmp_path, ref, layout):
    """Revisions before the record buckets (398d8a1) and before the index buckets (e468582)."""
    assert git_source(ref)[1] == layout
    proc = subprocess.run([sys.executable, "-m", "bench.record_packing", "--smoke", "--baseline-ref", ref,
                           "--out-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / "record_packing.json").read_text())
    assert result["failures"] == [] and set(result["ratios"]) == {"packed / keys", "before / keys", "packed / before"}
