"""Pure logic of bench/reconcile_scale.py: changed-SKU sets, scaling verdict, COPY text, URLs."""

from __future__ import annotations

import pytest

from bench.reconcile_scale import changed_indices, copy_text, scaling, sku_name, sqlalchemy_url


def test_changed_indices_spread_over_the_catalogue_and_skip_the_core_sku():
    picked = changed_indices(1_000_000, 0)
    assert len(picked) == len(set(picked)) == 100
    assert 0 not in picked and max(picked) < 1_000_000 and picked[1] - picked[0] == 10_000


def test_changed_indices_differ_between_rounds():
    rounds = [set(changed_indices(1_000, r)) for r in range(8)]
    assert all(len(r) == 100 and max(r) < 1_000 for r in rounds)
    assert all(a.isdisjoint(b) for i, a in enumerate(rounds) for b in rounds[i + 1:])


def test_changed_indices_refuses_a_catalogue_too_small():
    with pytest.raises(ValueError):
        changed_indices(150, 0)


def test_scaling_uses_medians_and_judges_the_ratio():
    result = scaling([0.010, 0.011, 0.050], [0.018, 0.019, 0.020])
    assert result["small_median_s"] == 0.011 and result["large_median_s"] == 0.019
    assert result["ratio"] == pytest.approx(1.727, abs=1e-3) and result["target"]["met"]
    missed = scaling([0.010], [0.025])
    assert not missed["target"]["met"] and missed["target"]["over_by"] == pytest.approx(0.5)


def test_copy_text_escapes_and_nulls():
    text = copy_text([("a\tb", None, True, 5), ("back\\slash", "x\ny", False, 0)])
    assert text == "a\\tb\t\\N\tt\t5\nback\\\\slash\tx\\ny\tf\t0\n"


def test_sku_names_sort_in_number_order():
    assert sku_name(9) < sku_name(10) < sku_name(999_999)


def test_sqlalchemy_url_from_libpq_dsn():
    url = sqlalchemy_url("host=127.0.0.1 port=5432 user=postgres", "flashstock_bench_rec_small")
    assert url == "postgresql+psycopg2://postgres@127.0.0.1:5432/flashstock_bench_rec_small"
