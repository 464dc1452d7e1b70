"""Ceiling for the browse + buy mix: the bare reserve app plus a bare product read (one HGETALL)."""

from __future__ import annotations

from typing import Callable, Iterable

from bench.ceiling.app import StartResponse, _reply, make_client
from bench.ceiling.app import create_app as create_reserve_app

PRODUCTS = "/v1/products/"
REQUEST_ID = "X-Request-ID"


def create_app(
    redis_host: str = "127.0.0.1",
    redis_port: int = 6379,
    key_prefix: str = "fsbench",
    client: str = "tuned",
    max_connections: int = 128,
) -> Callable[[dict, StartResponse], Iterable[bytes]]:
    """gunicorn factory: 'bench.ceiling.browse:create_app(redis_port=..., client="tuned")'.

    GET /v1/products/<sku> reads what flashstock's product view reads (the SKU's stock hash, one
    HGETALL) and returns it as JSON; everything else goes to the reserve ceiling (bench/ceiling/app.py).
    X-Request-ID is echoed, as flashstock does, so bench/wrk/mix.lua can match answers to requests.
    """
    from inventory.keys import KeySpace

    reserve_app = create_reserve_app(redis_host=redis_host, redis_port=redis_port, key_prefix=key_prefix,
                                     client=client, max_connections=max_connections)
    keys = KeySpace(key_prefix)
    r, _ = make_client(client, redis_host, redis_port, max_connections)

    def product(sku: str, start_response: StartResponse) -> Iterable[bytes]:
        fields = r.hgetall(keys.sku(sku).stock)
        if not fields:
            return _reply(start_response, "404 Not Found", {"error": {"code": "product_not_found"}})
        return _reply(start_response, "200 OK", {"data": {k.decode(): v.decode() for k, v in fields.items()}})

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        request_id = environ.get("HTTP_X_REQUEST_ID")
        if request_id is not None:
            inner = start_response

            def start_response(status: str, headers: list, exc_info: object = None) -> object:
                return inner(status, [*headers, (REQUEST_ID, request_id)], exc_info)

        path = environ["PATH_INFO"]
        if environ["REQUEST_METHOD"] == "GET" and path.startswith(PRODUCTS):
            return product(path[len(PRODUCTS):], start_response)
        return reserve_app(environ, start_response)

    return app
