"""Redis client construction: bounded pool and no silent re-sends of non-idempotent scripts."""

from __future__ import annotations

from inventory import Settings
from inventory.store import connect_redis


def test_real_redis_client_never_resends_a_command_after_a_lost_reply() -> None:
    client = connect_redis(Settings(redis_url="redis://127.0.0.1:6379/0", redis_max_connections=300))
    pool = client.connection_pool
    assert pool.max_connections == 300
    connection = pool.make_connection()
    # An 'add' stock adjustment re-sent after a lost reply would apply twice: retries must stay off.
    assert connection.retry._retries == 0
    assert connection.socket_timeout == connection.socket_connect_timeout == 2.0
