"""The scenarios: one fault each, on a stack of its own. Each is one row of the results table."""

from __future__ import annotations

from dataclasses import dataclass, field

from chaos import faults
from chaos.stack import StackConfig


@dataclass(frozen=True)
class Scenario:
    """A fault, when it starts, how long the load must run around it, and the stack it needs."""

    name: str
    fault: str
    inject: faults.Fault | None
    at_s: float = 5.0  # seconds into the load
    load_s: float = 0.0  # minimum load seconds (0: the size's default)
    cfg: StackConfig = field(default_factory=StackConfig)
    after: faults.Fault | None = None  # extra checks once the load is over
    min_workers: int = 1  # Celery workers the fault needs (a smoke run starts no more than this)


SCENARIOS: list[Scenario] = [
    Scenario("baseline", "none: mixed load only", None),
    Scenario("redis_kill9", "kill -9 redis-server, restarted from its AOF 1 s later", faults.redis_kill9),
    Scenario("redis_flush", "FLUSHALL on the scenario's own redis-server mid-sale", faults.redis_flush),
    Scenario("redis_old_snapshot", "AOF copied, 6 s of sale, redis-server killed and started from the copy",
             faults.redis_old_snapshot, at_s=3.0, load_s=20.0),
    Scenario("redis_stall", "SIGSTOP redis-server for 10 s under load", faults.redis_stall, load_s=22.0),
    Scenario("worker_kill_batch", "kill -9 a Celery worker as its persist task arrives; restarted 1 s later",
             faults.worker_kill_mid_batch),
    Scenario("worker_kill_commit", "PostgreSQL commits a batch, its answer held at the proxy; the committing "
             "worker killed -9; restarted 1 s later", faults.worker_kill_mid_commit),
    Scenario("pg_unreachable", "PostgreSQL unreachable 30 s for workers, beats and API (proxy cut, then restored)",
             faults.pg_unreachable, at_s=3.0, load_s=38.0),
    Scenario("visibility_timeout", "a worker's pool child frozen ~28 s mid-task past a 10 s visibility timeout; "
             "the other worker restarted meanwhile", faults.outlive_visibility, at_s=3.0, load_s=32.0,
             cfg=StackConfig(visibility_timeout_s=10)),
    Scenario("beat_leader_kill", "two beats; kill -9 the one sending, the standby must take over",
             faults.beat_leader_kill, at_s=3.0, load_s=40.0),
    Scenario("api_worker_kill", "kill -9 a gunicorn worker mid-request, three times", faults.api_worker_kill),
    Scenario("keyed_burst", "10x concurrent duplicate keyed reserves and checkouts; same keys with other bodies",
             faults.keyed_burst, at_s=1.0),
    Scenario("webhook_abuse", "forged, stale, future-dated, replayed and re-used-id payment webhooks",
             faults.webhook_abuse, at_s=1.0),
    Scenario("clock_skew", "two API servers, one with its host clock 10 min ahead (libfaketime)",
             faults.clock_skew, cfg=StackConfig(api_servers=2, skew="+600"), after=faults.skew_check),
    # Redis Cluster (issue 11): API, workers and beat on a private 3-master cluster with a replica each.
    # A coordinated failover and a migration lose nothing, so every invariant holds unchanged; a crashed
    # master can lose its last acknowledged writes (docs/sync.md), which its loss window allows for.
    Scenario("cluster_failover", "cluster: the hot SKU's master hands over to its replica (CLUSTER FAILOVER) "
             "mid-sale", faults.cluster_failover, cfg=StackConfig(cluster=True)),
    Scenario("cluster_master_kill", "cluster: the hot SKU's master killed -9 mid-sale, its replica promoted by "
             "the cluster (its last acknowledged writes may be lost, as documented)", faults.cluster_master_kill,
             cfg=StackConfig(cluster=True)),
    Scenario("cluster_slot_migration", "cluster: the hot SKU's slot resharded to another master, 5 keys per "
             "MIGRATE, mid-sale", faults.cluster_slot_migration, cfg=StackConfig(cluster=True)),
]


SMOKE = ["baseline", "redis_kill9", "worker_kill_commit", "cluster_failover"]

BY_NAME = {s.name: s for s in SCENARIOS}
