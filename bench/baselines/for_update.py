"""Baseline (a): SELECT ... FOR UPDATE, then UPDATE, in one transaction."""

from __future__ import annotations

from typing import Any

from bench.baselines.common import SoldOut, insert_reservations, make_app


def reserve(conn: Any, user_id: str, items: list[tuple[str, int]]) -> list[int]:
    """Lock each stock row, check, decrement, insert holds, commit."""
    with conn.cursor() as cur:
        for sku, qty in items:
            cur.execute("SELECT available FROM stock WHERE sku = %s FOR UPDATE", (sku,))
            row = cur.fetchone()
            if row is None or row[0] < qty:
                conn.rollback()
                raise SoldOut(sku)
            cur.execute("UPDATE stock SET available = available - %s WHERE sku = %s", (qty, sku))
        ids = insert_reservations(cur, user_id, items)
    conn.commit()
    return ids


def create_app(dsn: str, pool_size: int = 12) -> Any:
    """gunicorn factory: 'bench.baselines.for_update:create_app(dsn=..., pool_size=12)'."""
    return make_app(reserve, dsn, pool_size)
