"""`bench.wsgi_cost` on a private redis-server: both apps answer every request as expected (201s with
stock, 409s without; figures are not asserted, the box is shared)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pytest

from bench.procs import ProcessGroup
from bench.services import start_redis
from bench.wsgi_cost import TARGETS, _apps, _cpu_rounds


@pytest.mark.redis_server
def test_both_apps_answer_every_round_as_expected() -> None:
    group = ProcessGroup(Path(tempfile.mkdtemp(prefix="wsgi-cost-test-")))
    try:
        port = start_redis(group).port
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            apps, seed = _apps(port)
            report = _cpu_rounds(apps, seed, requests=40, rounds=2)  # a wrong status raises
    finally:
        group.stop_all()
    assert set(report["cpu_us_per_answer"]) == {f"{t} {s}" for t in TARGETS for s in ("201", "409")}
    assert all(len(v) == 2 and min(v) > 0 for v in report["cpu_us_per_answer"].values())
    assert len(report["flashstock_over_ceiling"]["201"]) == 2
