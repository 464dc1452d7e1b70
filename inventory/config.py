"""One validated settings object, read from the environment (12-factor). Nothing else reads os.environ."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from environs import Env

CLUSTER_PARTITIONS = 16  # spread over the masters; every deployment process must use the same number


@dataclass(frozen=True)
class Settings:
    """Everything configurable in flashstock; defaults give the embedded, server-less mode."""

    redis_url: str = "memory://"  # redis://host:port/db, or redis+cluster://host:port[,host:port...]
    redis_partitions: int = 0  # key-space partitions (inventory/keys.py); 0 = 1 on one node, 16 on a cluster
    database_url: str = "sqlite:///flashstock.db"
    celery_broker_url: str = ""
    key_prefix: str = "fs"
    redis_max_connections: int = 512
    redis_timeout_seconds: float = 2.0
    hold_ttl_seconds: int = 120
    max_hold_ttl_seconds: int = 3600
    max_hold_lifetime_seconds: int = 3600  # extensions never keep a hold past its creation + this
    payment_ttl_seconds: int = 900  # an order unpaid this long after checkout expires (payment_expired)
    max_payment_lifetime_seconds: int = 3600  # extensions never move a payment deadline past checkout + this
    requires_action_extension_seconds: int = 600  # a 'requires_action' webhook extends by this
    soldout_cache_ttl_ms: int = 1000  # API processes answer sold_out from memory this long at most; 0 = off
    waitlist_ttl_seconds: int = 1800  # a waitlist entry not offered anything by then leaves the queue
    waitlist_claim_seconds: int = 120  # an offer to a waiting buyer lapses (and passes on) after this
    waitlist_max_length: int = 100_000  # buyers per SKU's waitlist; joining a full one is 409 waitlist_full
    record_retention_seconds: int = 86_400
    order_retention_seconds: int = 30 * 86_400
    sweep_batch_size: int = 200
    storefront_api_keys: tuple[str, ...] = ()
    admin_api_keys: tuple[str, ...] = ()
    jwt_secret: str = ""
    jwt_public_key: str = ""
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    webhook_secret: str = ""
    webhook_tolerance_seconds: int = 300
    rate_limit_reservations: str = "30/second"
    rate_limit_reservations_per_ip: str = "1000/second"
    idempotency_ttl_seconds: int = 86_400
    api_fast_path: bool = True  # POST /v1/reservations answered outside Flask (api/hotpath.py)
    api_bind: str = "127.0.0.1:8000"
    api_workers: int = 2
    metrics_dir: str = ""
    celery_queue: str = "flashstock"
    broker_visibility_timeout_seconds: int = 3600  # Redis broker: an unacknowledged task is redelivered after this
    worker_stall_exit_seconds: float = 60.0  # a worker with tasks waiting and none taken this long exits; 0 = off
    persist_batch_size: int = 500
    persist_claim_idle_seconds: float = 30.0
    persist_interval_seconds: float = 5.0
    expire_interval_seconds: float = 2.0
    reconcile_interval_seconds: float = 60.0
    recovery_interval_seconds: float = 10.0
    # API and workers run the recovery check before loading scripts again into a Redis that lost them
    # (restart, failover): a server back from an older snapshot sells nothing before it is repaired
    recovery_on_script_loss: bool = True
    log_level: str = "INFO"
    dashboard_secret: str = ""  # signs dashboard session cookies; empty: derived from admin_api_keys
    dashboard_session_seconds: int = 8 * 3600
    dashboard_cookie_secure: bool = False  # set behind TLS: the cookie then travels over HTTPS only

    def __post_init__(self) -> None:
        if not self.key_prefix or any(c in self.key_prefix for c in "{} "):
            raise ValueError("key_prefix must be non-empty without braces or spaces")
        if not 0 < self.hold_ttl_seconds <= self.max_hold_ttl_seconds:
            raise ValueError("hold_ttl_seconds must be in 1..max_hold_ttl_seconds")
        if not 0 < self.payment_ttl_seconds <= self.max_payment_lifetime_seconds:
            raise ValueError("payment_ttl_seconds must be in 1..max_payment_lifetime_seconds")
        if not 0 <= self.soldout_cache_ttl_ms <= 60_000:
            raise ValueError("soldout_cache_ttl_ms must be in 0..60000")
        if min(self.waitlist_ttl_seconds, self.waitlist_claim_seconds, self.waitlist_max_length) < 1:
            raise ValueError("waitlist settings must be >= 1")
        if self.max_hold_lifetime_seconds < 1 or self.requires_action_extension_seconds < 1:
            raise ValueError("max_hold_lifetime_seconds and requires_action_extension_seconds must be >= 1")
        if not 0 <= self.redis_partitions <= 4096:
            raise ValueError("redis_partitions must be in 0..4096 (0 = automatic)")
        if self.redis_max_connections < 1:
            raise ValueError("redis_max_connections must be positive")
        if not 1 <= self.persist_batch_size <= 10_000:
            raise ValueError("persist_batch_size must be in 1..10000")
        if self.broker_visibility_timeout_seconds < 1:
            raise ValueError("broker_visibility_timeout_seconds must be positive")
        if self.worker_stall_exit_seconds != 0 and not 5 <= self.worker_stall_exit_seconds <= 86_400:
            raise ValueError("worker_stall_exit_seconds must be 0 (off) or in 5..86400")
        if not 60 <= self.dashboard_session_seconds <= 30 * 86_400:
            raise ValueError("dashboard_session_seconds must be in 60..2592000")

    @property
    def redis_cluster(self) -> bool:
        """True when REDIS_URL names a Redis Cluster (redis+cluster:// or rediss+cluster://)."""
        return self.redis_url.split("://", 1)[0] in ("redis+cluster", "rediss+cluster")

    def partitions_for(self, cluster: bool) -> int:
        """Partitions of the key space: the setting, else 1 on a single node and 16 on a cluster."""
        return self.redis_partitions or (CLUSTER_PARTITIONS if cluster else 1)

    @property
    def broker_url(self) -> str:
        """Celery broker: explicit setting, else the Redis server the inventory uses (not a cluster:
        Celery's Redis transport speaks to one server, so a cluster deployment names its broker)."""
        if not self.celery_broker_url and self.redis_cluster:
            raise ValueError("CELERY_BROKER_URL is required when REDIS_URL names a Redis Cluster")
        return self.celery_broker_url or self.redis_url

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        """Settings from environment variables (REDIS_URL, DATABASE_URL, ...), then overrides."""
        env, d = Env(), cls()
        values: dict[str, Any] = dict(
            redis_url=env.str("REDIS_URL", d.redis_url),
            redis_partitions=env.int("REDIS_PARTITIONS", d.redis_partitions),
            database_url=env.str("DATABASE_URL", d.database_url),
            celery_broker_url=env.str("CELERY_BROKER_URL", d.celery_broker_url),
            key_prefix=env.str("KEY_PREFIX", d.key_prefix),
            redis_max_connections=env.int("REDIS_MAX_CONNECTIONS", d.redis_max_connections),
            redis_timeout_seconds=env.float("REDIS_TIMEOUT_SECONDS", d.redis_timeout_seconds),
            hold_ttl_seconds=env.int("HOLD_TTL_SECONDS", d.hold_ttl_seconds),
            max_hold_ttl_seconds=env.int("MAX_HOLD_TTL_SECONDS", d.max_hold_ttl_seconds),
            max_hold_lifetime_seconds=env.int("MAX_HOLD_LIFETIME_SECONDS", d.max_hold_lifetime_seconds),
            payment_ttl_seconds=env.int("PAYMENT_TTL_SECONDS", d.payment_ttl_seconds),
            max_payment_lifetime_seconds=env.int("MAX_PAYMENT_LIFETIME_SECONDS", d.max_payment_lifetime_seconds),
            requires_action_extension_seconds=env.int("REQUIRES_ACTION_EXTENSION_SECONDS",
                                                      d.requires_action_extension_seconds),
            soldout_cache_ttl_ms=env.int("SOLDOUT_CACHE_TTL_MS", d.soldout_cache_ttl_ms),
            waitlist_ttl_seconds=env.int("WAITLIST_TTL_SECONDS", d.waitlist_ttl_seconds),
            waitlist_claim_seconds=env.int("WAITLIST_CLAIM_SECONDS", d.waitlist_claim_seconds),
            waitlist_max_length=env.int("WAITLIST_MAX_LENGTH", d.waitlist_max_length),
            record_retention_seconds=env.int("RECORD_RETENTION_SECONDS", d.record_retention_seconds),
            order_retention_seconds=env.int("ORDER_RETENTION_SECONDS", d.order_retention_seconds),
            sweep_batch_size=env.int("SWEEP_BATCH_SIZE", d.sweep_batch_size),
            storefront_api_keys=tuple(env.list("STOREFRONT_API_KEYS", [])),
            admin_api_keys=tuple(env.list("ADMIN_API_KEYS", [])),
            jwt_secret=env.str("JWT_SECRET", d.jwt_secret),
            jwt_public_key=env.str("JWT_PUBLIC_KEY", d.jwt_public_key),
            jwt_algorithms=tuple(env.list("JWT_ALGORITHMS", list(d.jwt_algorithms))),
            webhook_secret=env.str("WEBHOOK_SECRET", d.webhook_secret),
            webhook_tolerance_seconds=env.int("WEBHOOK_TOLERANCE_SECONDS", d.webhook_tolerance_seconds),
            rate_limit_reservations=env.str("RATE_LIMIT_RESERVATIONS", d.rate_limit_reservations),
            rate_limit_reservations_per_ip=env.str("RATE_LIMIT_RESERVATIONS_PER_IP",
                                                   d.rate_limit_reservations_per_ip),
            idempotency_ttl_seconds=env.int("IDEMPOTENCY_TTL_SECONDS", d.idempotency_ttl_seconds),
            api_fast_path=env.bool("API_FAST_PATH", d.api_fast_path),
            api_bind=env.str("BIND", d.api_bind),
            api_workers=env.int("WEB_CONCURRENCY", d.api_workers),
            metrics_dir=env.str("PROMETHEUS_MULTIPROC_DIR", d.metrics_dir),
            celery_queue=env.str("CELERY_QUEUE", d.celery_queue),
            broker_visibility_timeout_seconds=env.int("BROKER_VISIBILITY_TIMEOUT_SECONDS",
                                                      d.broker_visibility_timeout_seconds),
            worker_stall_exit_seconds=env.float("WORKER_STALL_EXIT_SECONDS", d.worker_stall_exit_seconds),
            persist_batch_size=env.int("PERSIST_BATCH_SIZE", d.persist_batch_size),
            persist_claim_idle_seconds=env.float("PERSIST_CLAIM_IDLE_SECONDS", d.persist_claim_idle_seconds),
            persist_interval_seconds=env.float("PERSIST_INTERVAL_SECONDS", d.persist_interval_seconds),
            expire_interval_seconds=env.float("EXPIRE_INTERVAL_SECONDS", d.expire_interval_seconds),
            reconcile_interval_seconds=env.float("RECONCILE_INTERVAL_SECONDS", d.reconcile_interval_seconds),
            recovery_interval_seconds=env.float("RECOVERY_INTERVAL_SECONDS", d.recovery_interval_seconds),
            recovery_on_script_loss=env.bool("RECOVERY_ON_SCRIPT_LOSS", d.recovery_on_script_loss),
            log_level=env.str("LOG_LEVEL", d.log_level),
            dashboard_secret=env.str("DASHBOARD_SECRET", d.dashboard_secret),
            dashboard_session_seconds=env.int("DASHBOARD_SESSION_SECONDS", d.dashboard_session_seconds),
            dashboard_cookie_secure=env.bool("DASHBOARD_COOKIE_SECURE", d.dashboard_cookie_secure),
        )
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **changes: Any) -> "Settings":
        """A copy with some settings changed."""
        return replace(self, **changes)
