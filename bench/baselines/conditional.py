"""Baseline (b): conditional UPDATE ... WHERE available >= qty."""

from __future__ import annotations

from typing import Any

from bench.baselines.common import SoldOut, insert_reservations, make_app


def reserve(conn: Any, user_id: str, items: list[tuple[str, int]]) -> list[int]:
    """Decrement only if enough is left; zero rows updated means sold out."""
    with conn.cursor() as cur:
        for sku, qty in items:
            cur.execute(
                "UPDATE stock SET available = available - %s WHERE sku = %s AND available >= %s",
                (qty, sku, qty),
            )
            if cur.rowcount != 1:
                conn.rollback()
                raise SoldOut(sku)
        ids = insert_reservations(cur, user_id, items)
    conn.commit()
    return ids


def create_app(dsn: str, pool_size: int = 12) -> Any:
    """gunicorn factory: 'bench.baselines.conditional:create_app(dsn=..., pool_size=12)'."""
    return make_app(reserve, dsn, pool_size)
