"""The cached ceiling (bench/ceiling/app.py, remember_sold_out) is a bound only if its memory is exact:
it sells through the script until a refusal, then answers that SKU from memory, for that SKU only and
only for the time it was given."""

from __future__ import annotations

import io
import json
import time
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

import pytest
import redis

from bench.ceiling.app import create_app
from inventory.keys import KeySpace
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.redis_server
URL = urlparse(REDIS_URL)


def _post(app: Callable[..., Any], user: str, sku: str) -> str:
    body = json.dumps({"user_id": user, "items": [{"sku": sku, "qty": 1}]}).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/reservations", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}
    seen: list[str] = []
    b"".join(app(environ, lambda status, headers: seen.append(status)))
    return seen[0]


@pytest.fixture
def prefix(redis_server: redis.Redis, key_prefix: str) -> Iterator[str]:
    own = key_prefix.replace(":", "-")
    yield own
    for key in redis_server.scan_iter(f"{own}*", count=1000):
        redis_server.unlink(key)


def _stock(redis_server: redis.Redis, prefix: str, sku: str, avail: int, total: int) -> None:
    key = KeySpace(prefix).of_sku(sku).sku(sku).stock
    redis_server.hset(key, mapping={"avail": avail, "held": 0, "sold": total - avail, "total": total, "price": 100})


@pytest.mark.parametrize("remember", [0.0, 60.0])
def test_remembers_a_refused_sku_only_when_asked(redis_server: redis.Redis, prefix: str, remember: float) -> None:
    app = create_app(redis_host=URL.hostname, redis_port=URL.port, key_prefix=prefix, remember_sold_out=remember)
    for sku in ("HOT", "OTHER"):
        _stock(redis_server, prefix, sku, 2, 2)
    assert [_post(app, f"u{i}", "HOT") for i in range(3)] == ["201 Created", "201 Created", "409 Conflict"]
    _stock(redis_server, prefix, "HOT", 1, 3)  # a unit comes back behind the app's back
    assert _post(app, "u9", "HOT") == ("409 Conflict" if remember else "201 Created")
    assert _post(app, "u10", "OTHER") == "201 Created"  # another SKU still goes to the script


def test_forgets_a_refusal_once_its_memory_lapses(redis_server: redis.Redis, prefix: str) -> None:
    app = create_app(redis_host=URL.hostname, redis_port=URL.port, key_prefix=prefix, remember_sold_out=0.05)
    _stock(redis_server, prefix, "HOT", 0, 0)
    assert _post(app, "u1", "HOT") == "409 Conflict"
    _stock(redis_server, prefix, "HOT", 1, 1)  # the harness reseeds between loads
    time.sleep(0.1)
    assert _post(app, "u2", "HOT") == "201 Created"
