"""`bench.sweep_cost`'s child on real Redis: every hold comes back in one sweep (figures are not asserted:
the script counts are server-wide and the server may be shared)."""

from __future__ import annotations

import pytest

from bench.sweep_cost import child
from tests.conftest import REDIS_URL


@pytest.mark.redis_server
@pytest.mark.parametrize("layout", ["hot", "spread"])
def test_one_sweep_gives_back_every_hold(layout: str) -> None:
    row = child(layout, 60, REDIS_URL)
    assert row["units_returned"] == 60 and row["all_back"] and row["sweep_s"] > 0
