"""Pure logic of bench/reconcile_latency.py: percentiles, the idle + 5 ms verdict, seed sizes."""

from __future__ import annotations

from bench.reconcile_latency import goal, percentiles, sizes, sku_names


def test_percentiles_use_nearest_rank():
    result = percentiles([float(v) for v in range(1, 101)])
    assert (result["n"], result["p50"], result["p99"], result["max"]) == (100, 50.0, 99.0, 100.0)
    assert percentiles([])["p99"] is None


def test_goal_allows_idle_p99_plus_slack():
    assert goal(0.4, 5.3)["met"] and goal(0.4, 5.4)["met"]
    missed = goal(0.4, 9.4)
    assert not missed["met"] and missed["over_by"] == 4.0
    assert goal(None, 1.0)["value"] is None


def test_full_size_is_the_issue_figure_and_smoke_is_smaller():
    full, smoke = sizes(False), sizes(True)
    assert (full.holds, full.outbox) == (20_000, 40_000)
    assert smoke.holds < full.holds and smoke.outbox < full.outbox and smoke.seconds < full.seconds
    assert sku_names(full)[0] == "HOT" and len(sku_names(full)) == 101
