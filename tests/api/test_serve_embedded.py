"""`flashstock serve` on the embedded default (memory:// Redis, SQLite): the README's first command and its
"Try it" walk-through, run as written."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from tests.api.test_gunicorn_hot_sku import ROOT, _free_port
from tests.helpers import stop_process

CLI = [sys.executable, "-m", "cli"]


def _request(port: int, path: str, *, key: str = "", body: dict | None = None) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET",
                                     headers={"X-API-Key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read().decode()
        return response.status, json.loads(raw) if raw.startswith("{") else raw


@contextlib.contextmanager
def embedded_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """`flashstock serve` with no credentials configured, on a free port; yields the port and its output file."""
    port = _free_port()
    env = {**os.environ, "REDIS_URL": "memory://", "DATABASE_URL": f"sqlite:///{tmp_path}/embedded.db",
           "STOREFRONT_API_KEYS": "", "ADMIN_API_KEYS": "", "WEBHOOK_SECRET": ""}
    output = tmp_path / "serve.log"
    with output.open("w") as log:
        server = subprocess.Popen([*CLI, "serve", "--bind", f"127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 40
        while True:
            text = output.read_text()
            if f"docs: http://127.0.0.1:{port}/docs" in text:
                try:
                    if _request(port, "/livez")[0] == 200:
                        break
                except OSError:
                    pass
            assert server.poll() is None, text[-3000:]
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(0.3)
        yield port, output
    finally:
        stop_process(server)


def test_serve_starts_the_api_on_the_embedded_default_with_demo_products(tmp_path: Path):
    with embedded_server(tmp_path) as (port, output):
        text = output.read_text()
        key = re.search(r"storefront API key for this run: (\S+)", text).group(1)
        status, products = _request(port, "/v1/products", key=key)
        assert status == 200
        assert {p["sku"] for p in products["data"]} >= {"DEMO-HOT", "DEMO-TEE", "DEMO-MUG"}
        status, held = _request(port, "/v1/reservations", key=key,
                                body={"user_id": "visitor", "items": [{"sku": "DEMO-HOT", "qty": 1}]})
        assert status == 201 and held["data"]["status"] == "held"
        status, page = _request(port, "/docs")
        assert status == 200 and "/docs/assets/swagger-ui-bundle.js" in page
        assert _request(port, "/docs/assets/swagger-ui-bundle.js")[0] == 200
    # serve patches gevent before anything imports redis or ssl: the start prints no MonkeyPatchWarning.
    assert "MonkeyPatchWarning" not in output.read_text()


def _readme_walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- walkthrough:start -->", 1)[1].split("<!-- walkthrough:end -->", 1)[0]
    return section.strip().removeprefix("```bash").removesuffix("```")


def test_the_readme_walkthrough_runs_as_written_against_the_embedded_server(tmp_path: Path):
    # The reader's checkout: `.venv/bin/activate` puts this interpreter on PATH.
    workdir = tmp_path / "clone"
    (workdir / ".venv" / "bin").mkdir(parents=True)
    (workdir / ".venv" / "bin" / "activate").write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    with embedded_server(tmp_path) as (port, output):
        exports = [line.strip() for line in output.read_text().splitlines() if line.strip().startswith("export ")]
        assert len(exports) == 1, output.read_text()
        script = "set -euo pipefail\n" + exports[0] + "\n" + \
            _readme_walkthrough().replace("http://localhost:8000", f"http://127.0.0.1:{port}")
        done = subprocess.run(["bash", "-c", script], cwd=workdir, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert {p["sku"] for p in answers[0]["data"]} == {"DEMO-HOT", "DEMO-TEE", "DEMO-MUG"}
    assert answers[1]["data"]["status"] == "held"
    assert answers[3]["data"]["status"] == "pending_payment"
    assert answers[4]["data"]["status"] == "paid"
    assert answers[-1]["data"]["status"] == "paid"
