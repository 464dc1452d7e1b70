"""Every API process's sold-out cache forgets a SKU when a unit comes back (real processes, real servers).

The figure (how fast) is measured in bench/soldout_bound.py; here only that it happens, on one
redis-server and on the cluster, with a time-to-live long enough that only the announcement explains it.
"""

from __future__ import annotations

from bench.soldout_bound import measure


def test_every_process_forgets_a_sold_out_sku_when_a_unit_comes_back(real_inv) -> None:  # noqa: ANN001
    settings = real_inv.settings.with_overrides(soldout_cache_ttl_ms=60_000)
    per_process = measure(settings, processes=3, rounds=5)
    print(f"\nsold-out bound, ms per release and process: {per_process}")
    assert len(per_process) == 3 and all(len(delays) == 5 for delays in per_process)
    assert max(max(delays) for delays in per_process) < 5_000  # far below the 60 s time-to-live
