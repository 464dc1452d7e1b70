"""The real thing: gunicorn with gevent workers over HTTP, a hot SKU, hundreds of concurrent buyers."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from inventory import Inventory
from tests.api.http_load import fire
from tests.helpers import assert_invariant, make_product, stock, stop_process

ROOT = Path(__file__).resolve().parents[2]
STOCK, ATTEMPTS, CONCURRENCY = 200, 1200, 400  # 400 open connections: above redis-py's 100-connection default
API_KEY = "sf-key-gunicorn"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.fixture
def gunicorn_server(real_redis, settings, migrated_db_url, tmp_path) -> Iterator[int]:
    """gunicorn -c gunicorn.conf.py wsgi:app with 2 gevent workers on a free loopback port (one Redis or the
    cluster), over a migrated database as in production: a worker that meets a server without its scripts
    runs the recovery check there before loading them."""
    port = _free_port()
    env = {**os.environ, "REDIS_URL": settings.redis_url, "KEY_PREFIX": settings.key_prefix,
           "DATABASE_URL": migrated_db_url,
           "STOREFRONT_API_KEYS": API_KEY, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
           "RATE_LIMIT_RESERVATIONS": "100/second", "RATE_LIMIT_RESERVATIONS_PER_IP": "100000/second",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    if settings.celery_broker_url:  # on the cluster: the single-server broker (Settings.broker_url)
        env["CELERY_BROKER_URL"] = settings.celery_broker_url
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(port, "/livez")[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        yield port
    finally:
        stop_process(server)
        log.close()


def test_hot_sku_over_http_sells_exactly_the_stock_and_never_fails(gunicorn_server, real_redis, settings):
    port = gunicorn_server
    inv = Inventory(real_redis, settings)
    make_product(inv, "HOT", stock=STOCK)
    requests = [("POST", "/v1/reservations", {"X-API-Key": API_KEY},
                 {"user_id": f"buyer-{n}", "items": [{"sku": "HOT", "qty": 1}]}) for n in range(ATTEMPTS)]

    started = time.perf_counter()
    replies = fire("127.0.0.1", port, requests, concurrency=CONCURRENCY)
    wall = time.perf_counter() - started

    statuses = Counter(reply.status for reply in replies)
    codes = Counter(reply.body["error"]["code"] for reply in replies if reply.status == 409)
    server_errors = sum(count for status, count in statuses.items() if status >= 500 or status == 0)
    print(f"\nhot SKU over HTTP (gunicorn, 2 gevent workers): requests={ATTEMPTS} concurrency={CONCURRENCY} "
          f"stock={STOCK} successes(201)={statuses[201]} sold_out(409)={codes['sold_out']} "
          f"5xx={server_errors} wall={wall:.2f}s ({ATTEMPTS / wall:.0f} req/s)")

    assert server_errors == 0, [r for r in replies if r.status >= 500 or r.status == 0][:3]
    assert statuses[201] == STOCK
    assert statuses[409] == codes["sold_out"] == ATTEMPTS - STOCK
    assert set(statuses) == {201, 409}
    level = stock(inv, "HOT")
    assert (level.available, level.held) == (0, STOCK)
    assert_invariant(level)

    # Both workers' counters are aggregated (prometheus multiprocess mode).
    status, metrics = _get(port, "/metrics")
    assert status == 200
    assert re.search(rf'flashstock_reservations_total\{{outcome="held"\}} {STOCK}\.0', metrics)
    assert re.search(rf'flashstock_reservations_total\{{outcome="sold_out"\}} {ATTEMPTS - STOCK}\.0', metrics)
    assert _get(port, "/readyz")[0] == 200


def _request_lines(log: Path, path: str) -> list[dict]:
    lines = [line for line in log.read_text().splitlines() if line.startswith("{") and f'"path":"{path}"' in line]
    return [json.loads(line) for line in lines]


def test_every_answer_writes_one_whole_log_line_though_a_loop_turn_writes_them_together(gunicorn_server, real_redis,
                                                                                        settings, tmp_path):
    port = gunicorn_server
    make_product(Inventory(real_redis, settings), "LOGGED", stock=50)
    requests = [("POST", "/v1/reservations", {"X-API-Key": API_KEY, "X-Request-ID": f"req-{n}"},
                 {"user_id": f"buyer-{n}", "items": [{"sku": "LOGGED", "qty": 1}]}) for n in range(300)]
    replies = fire("127.0.0.1", port, requests, concurrency=100)
    assert Counter(reply.status for reply in replies) == {201: 50, 409: 250}
    deadline = time.monotonic() + 10  # a worker writes a turn's lines once that turn's greenlets have run
    while len(lines := _request_lines(tmp_path / "gunicorn.log", "/v1/reservations")) < len(requests):
        assert time.monotonic() < deadline, f"{len(lines)} of {len(requests)} request lines written"
        time.sleep(0.05)
    assert sorted(line["request_id"] for line in lines) == sorted(f"req-{n}" for n in range(300))
    assert Counter(line["status"] for line in lines) == {201: 50, 409: 250}


def test_gunicorn_starts_without_a_gevent_monkey_patch_warning(gunicorn_server, tmp_path):
    # gunicorn.conf.py patches before the app imports redis; the worker's own patch then finds nothing to warn of.
    assert "MonkeyPatchWarning" not in (tmp_path / "gunicorn.log").read_text()
