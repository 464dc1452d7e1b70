"""Shared plumbing for the PostgreSQL baseline apps: pool, schema, request/response shape."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import psycopg2
import psycopg2.extensions

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    sku        text PRIMARY KEY,
    available  integer NOT NULL CHECK (available >= 0),
    version    bigint  NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS reservations (
    id         bigserial PRIMARY KEY,
    user_id    text    NOT NULL,
    sku        text    NOT NULL,
    qty        integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""


class SoldOut(Exception):
    """Not enough units for one of the requested items."""

    def __init__(self, sku: str, code: str = "sold_out") -> None:
        super().__init__(sku)
        self.sku = sku
        self.code = code


# A reserve strategy takes an open (non-autocommit) connection, the user id and
# sorted (sku, qty) pairs; it commits on success or raises SoldOut after rollback.
Reserve = Callable[[psycopg2.extensions.connection, str, list[tuple[str, int]]], list[int]]


class PgPool:
    """Fixed-size blocking psycopg2 pool for gevent: greenlets wait for a free connection."""

    def __init__(self, dsn: str, size: int, wait_s: float = 10.0) -> None:
        from gevent.queue import LifoQueue

        self._dsn = dsn
        self._wait_s = wait_s
        self._q: Any = LifoQueue()
        for _ in range(size):
            self._q.put(None)  # connections are opened lazily on first use

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """Borrow a connection; a broken one is closed and replaced lazily."""
        conn = self._q.get(timeout=self._wait_s)
        try:
            if conn is None or conn.closed:
                conn = psycopg2.connect(self._dsn)
            yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            if conn is not None:
                conn.close()
            conn = None
            raise
        finally:
            if conn is not None and conn.status != psycopg2.extensions.STATUS_READY:
                conn.rollback()
            self._q.put(conn)


def patch_for_gevent() -> None:
    """Make psycopg2 yield to the gevent hub while waiting on the server."""
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()


def parse_request(body: bytes) -> tuple[str, list[tuple[str, int]]]:
    """Validate a reservation body; return user id and (sku, qty) pairs sorted by sku."""
    doc = json.loads(body)
    user_id = doc["user_id"]
    items = doc["items"]
    if not isinstance(user_id, str) or not user_id or not isinstance(items, list) or not items:
        raise ValueError("user_id and items are required")
    pairs: dict[str, int] = {}
    for item in items:
        sku, qty = item["sku"], item["qty"]
        if not isinstance(sku, str) or not isinstance(qty, int) or qty <= 0:
            raise ValueError("bad item")
        pairs[sku] = pairs.get(sku, 0) + qty
    # A global lock order (by sku) keeps multi-item reservations deadlock-free.
    return user_id, sorted(pairs.items())


def created(user_id: str, items: list[tuple[str, int]], ids: list[int]) -> tuple[int, dict]:
    """201 body in flashstock's shape."""
    return 201, {
        "data": {
            "reservation_ids": ids,
            "user_id": user_id,
            "items": [{"sku": s, "qty": q} for s, q in items],
        }
    }


def error(status: int, code: str, message: str, **extra: Any) -> tuple[int, dict]:
    """Error body in flashstock's shape."""
    return status, {"error": {"code": code, "message": message, **extra}}


def insert_reservations(cur: Any, user_id: str, items: list[tuple[str, int]]) -> list[int]:
    """Insert one hold row per item, as a real reservation would."""
    ids = []
    for sku, qty in items:
        cur.execute(
            "INSERT INTO reservations (user_id, sku, qty) VALUES (%s, %s, %s) RETURNING id",
            (user_id, sku, qty),
        )
        ids.append(cur.fetchone()[0])
    return ids


def make_app(reserve: Reserve, dsn: str, pool_size: int) -> Any:
    """Flask app exposing POST /v1/reservations backed by the given strategy."""
    from flask import Flask, Response, request

    patch_for_gevent()
    pool = PgPool(dsn, pool_size)
    app = Flask(__name__)

    def respond(result: tuple[int, dict]) -> Response:
        answer = Response(json.dumps(result[1]), status=result[0], mimetype="application/json")
        if "X-Request-ID" in request.headers:  # echoed, as flashstock does: the driver times each request
            answer.headers["X-Request-ID"] = request.headers["X-Request-ID"]
        return answer

    @app.post("/v1/reservations")
    def reservations() -> Response:
        try:
            user_id, items = parse_request(request.get_data())
        except (ValueError, KeyError, TypeError):
            return respond(error(400, "invalid_request", "malformed reservation"))
        with pool.connection() as conn:
            try:
                ids = reserve(conn, user_id, items)
            except SoldOut as exc:
                return respond(error(409, exc.code, "not enough stock", sku=exc.sku))
        return respond(created(user_id, items, ids))

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", mimetype="text/plain")

    return app
