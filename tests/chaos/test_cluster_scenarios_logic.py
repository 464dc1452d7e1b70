"""The cluster scenarios aim their faults at the slot that serves the hot SKU on a cluster deployment."""

from __future__ import annotations

from redis.crc import key_slot

from chaos import faults
from chaos.scenarios import BY_NAME, SMOKE
from chaos.stack import KEY_PREFIX
from inventory import Settings
from inventory.keys import KeySpace


def test_the_hot_slot_is_the_slot_of_every_hot_sku_key_the_api_uses() -> None:
    partitions = Settings(key_prefix=KEY_PREFIX).partitions_for(cluster=True)
    keys = KeySpace(KEY_PREFIX, partitions).sku("HOT")
    slots = {key_slot(k.encode()) for k in (keys.stock, keys.holds, keys.buyers)}
    assert slots == {faults._hot_slot()}


def test_every_cluster_scenario_runs_on_a_cluster_stack_and_one_is_in_the_smoke_set() -> None:
    cluster = [name for name, s in BY_NAME.items() if s.cfg.cluster]
    assert sorted(cluster) == ["cluster_failover", "cluster_master_kill", "cluster_slot_migration"]
    assert "cluster_failover" in SMOKE
