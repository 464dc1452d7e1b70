"""bench/generators.per_request_latency: percentiles from reserve.lua's per-thread log histograms."""

from __future__ import annotations

import math
from pathlib import Path

from bench.generators import LATENCY_BUCKET, per_request_latency


def _bucket(us: float) -> int:
    return math.floor(math.log(us) / math.log(LATENCY_BUCKET))  # as reserve.lua buckets an answer


def test_percentiles_merge_the_threads_and_sit_within_one_percent_above_the_truth(tmp_path: Path) -> None:
    fast, slow = _bucket(1_000), _bucket(2_000_000)  # 1 ms, 2 s
    (tmp_path / "out.json.lat.0").write_text(f"a {fast} 989\na {slow} 5\ns {fast} 989\n")
    (tmp_path / "out.json.lat.1").write_text(f"a {fast} 1\na {slow} 5\ns {fast} 1\n")
    paths = sorted(tmp_path.glob("out.json.lat.*"))
    timed = per_request_latency(paths)
    every = timed["a"]
    assert every is not None and every["answers"] == 1000
    assert 1.0 <= every["p50"] <= 1.01 and 1.0 <= every["p99"] <= 1.01  # 990 of 1000 answers took 1 ms
    assert 2000 <= every["p999"] <= 2020 and every["max"] == every["p999"]
    steady = timed["s"]
    assert steady is not None and steady["answers"] == 990 and steady["max"] <= 1.01


def test_a_target_that_echoes_no_request_id_has_no_per_request_figures(tmp_path: Path) -> None:
    (tmp_path / "out.json.lat.0").write_text("\n")
    assert per_request_latency([tmp_path / "out.json.lat.0"]) == {"a": None, "s": None}
    assert per_request_latency([]) == {"a": None, "s": None}
