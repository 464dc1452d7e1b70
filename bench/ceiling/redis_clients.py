"""redis-py client constructions for a gevent hot path (see bench/NOTES.md)."""

from __future__ import annotations

import select
from queue import Empty
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry


def _python_parser() -> type:
    """The pure-Python RESP2 parser class (hiredis's can_read is slow under gevent)."""
    from redis._parsers import _RESP2Parser

    return _RESP2Parser


def default_client(host: str, port: int) -> redis.Redis:
    """redis-py defaults: ConnectionPool capped at 100, RESP3 in 8.x, 10 retries."""
    return redis.Redis(host=host, port=port)


def tuned_client(host: str, port: int, max_connections: int, wait_s: float = 2.0) -> redis.Redis:
    """Public-API-only construction measured fastest-correct on redis-py 8.1 + gevent."""
    pool = redis.BlockingConnectionPool(
        host=host,
        port=port,
        max_connections=max_connections,
        timeout=wait_s,
        protocol=2,
        parser_class=_python_parser(),
        # EVALSHA of a reserve script is not idempotent: never re-send it blindly.
        retry=Retry(NoBackoff(), 0),
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
    )
    return redis.Redis(connection_pool=pool)


def direct_evalsha(client: redis.Redis, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
    """EVALSHA on a pooled connection without Redis.execute_command's per-call wrapping."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_command("EVALSHA", sha, numkeys, *keys_and_args)
        return conn.read_response()
    finally:
        # send_command/read_response already disconnect on I/O errors, so a
        # released connection is either clean or closed (reconnects lazily).
        pool.release(conn)


try:  # the real poll(), not gevent's: a 0-timeout readiness probe must not build watchers
    from gevent.monkey import get_original

    _poll = get_original("select", "poll")
except ImportError:  # pragma: no cover - gevent is always present in the bench venv
    _poll = select.poll


def _has_pending_input(conn: Any) -> bool:
    """True if the idle socket is readable: stray data or EOF means it must not be reused."""
    sock = conn._sock
    poller = _poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class GeventBlockingPool(redis.BlockingConnectionPool):
    """BlockingConnectionPool with a cheap checkout: no metrics/events, raw poll staleness check."""

    def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """Take a connection (waiting up to `timeout`), connecting or replacing it if stale."""
        self._checkpid()
        try:
            conn = self.pool.get(block=True, timeout=self.timeout)
        except Empty:
            raise RedisConnectionError("No connection available.") from None
        try:
            if conn is None:
                conn = self.make_connection()
            if conn._sock is None:
                conn.connect()
            elif _has_pending_input(conn):
                conn.disconnect()
                conn.connect()
        except BaseException:
            if conn is None:
                self.pool.put_nowait(None)
            else:
                self.release(conn)
            raise
        return conn

    def release(self, connection: Any) -> None:
        """Return a connection; foreign (pre-fork) ones are dropped."""
        self._checkpid()
        if not self.owns_connection(connection):
            connection.disconnect()
            self.pool.put_nowait(None)
            return
        self.pool.put_nowait(connection)


def lean_client(host: str, port: int, max_connections: int, wait_s: float = 2.0) -> redis.Redis:
    """tuned_client's settings on GeventBlockingPool (relies on redis-py 8.1 pool internals)."""
    pool = GeventBlockingPool(
        host=host,
        port=port,
        max_connections=max_connections,
        timeout=wait_s,
        protocol=2,
        parser_class=_python_parser(),
        retry=Retry(NoBackoff(), 0),
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
    )
    return redis.Redis(connection_pool=pool)
