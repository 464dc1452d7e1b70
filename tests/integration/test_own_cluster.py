"""The local Redis Cluster the cluster tiers run on: it forms, serves, reshards and fails over for real."""

from __future__ import annotations

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from tests.conftest import delete_cluster_prefix
from tests.own_cluster import SLOTS, OwnCluster


def test_cluster_starts_with_three_masters_covering_every_slot(redis_cluster: OwnCluster) -> None:
    masters = redis_cluster.masters()
    assert len(masters) == 3 and redis_cluster.replicas() == []
    assert redis_cluster.url == "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in masters)
    for port in redis_cluster.ports:
        assert "cluster_state:ok" in redis_cluster.node(port).execute_command("CLUSTER", "INFO")
    owned = [n for n in redis_cluster.nodes() if n.is_master]
    covered = sorted(slot for n in owned for lo, hi in n.slots for slot in range(lo, hi + 1))
    assert covered == list(range(SLOTS))


def test_key_set_through_the_client_is_readable_from_its_slot_owner(
    redis_cluster: OwnCluster, cluster_redis: RedisCluster, key_prefix: str
) -> None:
    key = f"{key_prefix}:{{sku:A}}:stock"
    cluster_redis.set(key, "7")
    assert cluster_redis.get(key) == b"7"
    owner = redis_cluster.slot_owner(key_slot(key.encode()))
    assert redis_cluster.node(owner).get(key) == "7"


def test_cleanup_removes_only_the_test_prefix_and_its_clocks(
    redis_cluster: OwnCluster, cluster_redis: RedisCluster, key_prefix: str
) -> None:
    mine = [f"{key_prefix}:{{sku:{i}}}:stock" for i in range(20)]
    mine += [f"{key_prefix}.testclock", f"{key_prefix}.testclock{{sku:1}}"]
    other = f"fstest:other{key_prefix[-12:]}:{{sku:1}}:stock"
    try:
        for key in [*mine, other]:
            cluster_redis.set(key, 1)
        assert len({redis_cluster.slot_owner(key_slot(k.encode())) for k in mine}) == 3  # on every master
        delete_cluster_prefix(redis_cluster, key_prefix)  # what cluster_redis runs after each test
        assert [cluster_redis.exists(k) for k in mine] == [0] * len(mine)
        assert cluster_redis.exists(other) == 1
    finally:
        cluster_redis.delete(other)


def test_migrate_slot_moves_keys_and_the_client_follows_moved_and_ask(
    redis_cluster: OwnCluster, cluster_redis: RedisCluster, key_prefix: str
) -> None:
    tag = f"{key_prefix}:{{sku:M}}"
    slot = key_slot(tag.encode())
    keys = [f"{tag}:k{i}" for i in range(25)]
    for i, key in enumerate(keys):
        cluster_redis.set(key, i)
    source = redis_cluster.slot_owner(slot)
    target = next(p for p in redis_cluster.masters() if p != source)
    expected = [str(i).encode() for i in range(len(keys))]
    seen_mid_migration: list[int] = []

    def traffic(moved: int) -> None:
        # half-migrated: the source answers for keys it still has and sends ASK for the moved ones and for
        # new keys, which land on the target
        on_target = redis_cluster.node(target).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
        assert on_target == moved + len(seen_mid_migration)
        assert [cluster_redis.get(k) for k in keys] == expected
        cluster_redis.set(f"{tag}:new{moved}", moved)
        seen_mid_migration.append(moved)

    moved = redis_cluster.migrate_slot(slot, target, batch_size=10, between_batches=traffic)

    assert moved == len(keys)
    assert seen_mid_migration == [0, 10, 20, 25]
    assert redis_cluster.slot_owner(slot) == target
    assert redis_cluster.node(source).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    assert redis_cluster.node(target).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(keys) + 4
    assert cluster_redis.mget(keys) == expected  # MOVED followed
    assert cluster_redis.get(f"{tag}:new0") == b"0"
    assert redis_cluster.migrate_slot(slot, source) == len(keys) + 4  # and back, so other tests see the usual map


def test_killed_master_is_replaced_by_its_replica_and_the_client_follows(
    replicated_cluster: OwnCluster,
) -> None:
    cluster = replicated_cluster
    assert len(cluster.masters()) == 3 and len(cluster.replicas()) == 3
    client = cluster.client()
    key = "fstest:failover:{sku:F}:stock"
    slot = key_slot(key.encode())
    old_master = cluster.slot_owner(slot)
    with cluster.node(old_master).pipeline(transaction=False) as pipe:  # one connection: WAIT sees the SET
        pipe.set(key, "5")
        pipe.execute_command("WAIT", 1, 2000)
        assert pipe.execute() == [True, 1]  # the write reached the replica before the kill
    assert client.get(key) == b"5"

    (replica,) = cluster.kill_master(old_master)
    assert cluster.failover(replica) == replica

    assert cluster.slot_owner(slot) == replica
    assert old_master not in cluster.masters() and replica in cluster.masters()
    errors = 0
    for _ in range(2):
        try:
            assert client.get(key) == b"5"
            break
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError):
            errors += 1  # the client learns the new map from this failure
    assert errors <= 1
    assert client.incr(key) == 6
    assert cluster.node(replica).get(key) == "6"
    client.close()
