"""Baseline (c): optimistic concurrency on a version column, with bounded retries."""

from __future__ import annotations

import random
from typing import Any

import gevent

from bench.baselines.common import SoldOut, insert_reservations, make_app


def make_reserve(max_attempts: int, backoff_ms: float) -> Any:
    """Build a reserve function retrying lost version races up to max_attempts times."""

    def reserve(conn: Any, user_id: str, items: list[tuple[str, int]]) -> list[int]:
        """Read (available, version), write only if the version is unchanged; retry on a lost race."""
        for attempt in range(max_attempts):
            with conn.cursor() as cur:
                lost = False
                for sku, qty in items:
                    cur.execute("SELECT available, version FROM stock WHERE sku = %s", (sku,))
                    row = cur.fetchone()
                    if row is None or row[0] < qty:
                        conn.rollback()
                        raise SoldOut(sku)
                    cur.execute(
                        "UPDATE stock SET available = available - %s, version = version + 1 "
                        "WHERE sku = %s AND version = %s",
                        (qty, sku, row[1]),
                    )
                    if cur.rowcount != 1:
                        lost = True
                        break
                if not lost:
                    ids = insert_reservations(cur, user_id, items)
                    conn.commit()
                    return ids
            conn.rollback()
            # Jittered linear backoff spreads the retry herd on a hot row.
            gevent.sleep(random.uniform(0, backoff_ms * (attempt + 1)) / 1000.0)
        raise SoldOut(items[0][0], code="contention")

    return reserve


def create_app(dsn: str, pool_size: int = 12, max_attempts: int = 20, backoff_ms: float = 1.0) -> Any:
    """gunicorn factory: 'bench.baselines.optimistic:create_app(dsn=..., pool_size=12)'."""
    return make_app(make_reserve(max_attempts, backoff_ms), dsn, pool_size)
