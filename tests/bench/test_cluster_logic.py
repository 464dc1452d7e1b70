"""Pure logic of the cluster rows: per-shard counters and deltas (bench/cluster.py), balanced spread
SKUs and cluster ÷ single ratios (bench/core_only.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.cluster import Backend, merge_redis_cpu, node_counters, shard_delta
from bench.core_only import cluster_ratios, spread_skus
from inventory.keys import KeySpace


def test_node_counters_sum_every_script_command():
    stats = {"cmdstat_evalsha": {"calls": 10, "usec": 500}, "cmdstat_evalsha_ro": {"calls": 2, "usec": 40},
             "cmdstat_get": {"calls": 99, "usec": 1}}
    assert node_counters(stats, {"total_commands_processed": 150}) == {
        "commands": 150, "scripts": 12, "script_usec": 540}


def test_shard_delta_shares_and_per_answer():
    before = {"a": {"commands": 10, "scripts": 5, "script_usec": 100}, "b": {"commands": 0, "scripts": 0, "script_usec": 0}}
    after = {"a": {"commands": 40, "scripts": 35, "script_usec": 1600}, "b": {"commands": 10, "scripts": 10, "script_usec": 500}}
    d = shard_delta(before, after, answers=20)
    assert d["shards"]["a"]["scripts"] == 30 and d["shards"]["a"]["script_share"] == pytest.approx(0.75)
    assert d["shards"]["a"]["usec_per_script"] == 50.0
    assert d["total"] == {"commands": 40, "scripts": 40, "script_usec": 2000}
    assert d["scripts_per_answer"] == 2.0 and d["script_usec_per_answer"] == 100.0
    assert d["max_shard_share"] == pytest.approx(0.75)
    assert d["shards"]["a"]["usec_share"] == pytest.approx(0.75) and d["max_shard_usec_share"] == pytest.approx(0.75)


def test_shard_delta_without_scripts_has_no_shares():
    d = shard_delta({}, {"a": {"commands": 3, "scripts": 0, "script_usec": 0}}, answers=0)
    assert d["max_shard_share"] == 0.0 and d["shards"]["a"]["usec_per_script"] is None


def test_backend_cpu_names_and_merge():
    assert Backend("single", {6000: 11}).cpu_pids() == {"redis": 11}
    cluster = Backend("cluster", {7000: 1, 7001: 2}, "redis+cluster://x")
    assert cluster.cpu_pids() == {"redis:7000": 1, "redis:7001": 2}
    cpu = merge_redis_cpu({"component_cpu_s": {"server": 1.0, "redis:7000": 0.25, "redis:7001": 0.5}})
    assert cpu["component_cpu_s"] == {"server": 1.0, "redis": 0.75}
    assert cpu["redis_nodes_cpu_s"] == {"redis:7000": 0.25, "redis:7001": 0.5}


def test_spread_skus_fill_every_partition_evenly():
    skus = spread_skus(16, 4)
    assert len(skus) == len(set(skus)) == 64
    assert Counter(KeySpace("fs", 16).partition_of(s) for s in skus) == {i: 4 for i in range(16)}


def _phase(client: str, width: int, mode: str, ops: float, client_us: float, redis_s: float, share: float) -> dict:
    return {"driver": "core", "client": client, "width": width, "mode": mode, "ops_per_s": ops, "calls": 1000,
            "client_cpu_us_per_op": client_us, "cpu": {"component_cpu_s": {"redis": redis_s}},
            "shards": {"script_usec_per_answer": 50.0, "max_shard_share": share}}


def test_cluster_ratios_pair_each_cluster_phase_with_the_single_node():
    phases = [_phase("product", 2, "hold_spread", 2000, 300, 0.1, 1.0),
              _phase("cluster", 2, "hold_spread", 1500, 360, 0.15, 0.38),
              _phase("cluster", 1, "hold", 900, 400, 0.1, 1.0)]  # no single-node partner: left out
    assert cluster_ratios(phases) == {"2p-hold_spread": {
        "ops_per_s": 0.75, "client_cpu_per_op": 1.2, "redis_cpu_per_op": 1.5, "script_usec_per_op": 1.0,
        "max_shard_share": 0.38}}
