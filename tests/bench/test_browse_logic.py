"""Browse + buy mix harness logic: Zipf table, request plans, latency summaries, per-SKU accounting."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.browse_logic import (
    READ,
    RESERVE,
    SkuState,
    check_skus,
    expected_attempts,
    failures,
    latency_summary,
    request_plan,
    split_plan,
    zipf_cdf,
)


def test_zipf_cdf_is_increasing_and_ends_at_one() -> None:
    cdf = zipf_cdf(10_000, 1.1)
    assert len(cdf) == 10_000
    assert all(a < b for a, b in zip(cdf, cdf[1:]))
    assert cdf[-1] == 1.0


def test_zipf_cdf_weights_fall_as_rank_to_the_minus_s() -> None:
    cdf = zipf_cdf(100, 1.1)
    p1, p2, p10 = cdf[0], cdf[1] - cdf[0], cdf[9] - cdf[8]
    assert p1 / p2 == pytest.approx(2 ** 1.1)
    assert p1 / p10 == pytest.approx(10 ** 1.1)


def test_zipf_cdf_of_one_rank_is_certain() -> None:
    assert zipf_cdf(1, 1.1) == [1.0]


@pytest.mark.parametrize("n, s", [(0, 1.1), (10, 0.0)])
def test_zipf_cdf_rejects_empty_or_flat(n: int, s: float) -> None:
    with pytest.raises(ValueError):
        zipf_cdf(n, s)


def test_request_plan_has_exact_reserve_share_and_is_deterministic() -> None:
    plan = request_plan(5_000, 1_000, 1.1, 0.10, seed=6)
    assert Counter(op for op, _ in plan) == {READ: 4_500, RESERVE: 500}
    assert plan == request_plan(5_000, 1_000, 1.1, 0.10, seed=6)
    assert plan != request_plan(5_000, 1_000, 1.1, 0.10, seed=7)
    assert all(0 <= rank < 1_000 for _, rank in plan)


def test_request_plan_draws_ranks_by_zipf_popularity() -> None:
    plan = request_plan(50_000, 1_000, 1.1, 0.0, seed=1)
    counts = Counter(rank for _, rank in plan)
    cdf = zipf_cdf(1_000, 1.1)
    assert counts[0] / 50_000 == pytest.approx(cdf[0], rel=0.05)
    assert counts[0] > counts[1] > counts[9] > counts[99]


def test_split_plan_round_robins_every_item_once() -> None:
    plan = [(READ, i) for i in range(7)]
    parts = split_plan(plan, 2)
    assert parts == [[(READ, 0), (READ, 2), (READ, 4), (READ, 6)], [(READ, 1), (READ, 3), (READ, 5)]]


def test_expected_attempts_sum_to_the_reserves() -> None:
    cdf = zipf_cdf(500, 1.1)
    assert sum(expected_attempts(k, 1_000, cdf) for k in range(500)) == pytest.approx(1_000)


def test_latency_summary_uses_nearest_rank() -> None:
    summary = latency_summary(float(v) for v in range(1, 101))
    assert summary == {"n": 100, "p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
    assert latency_summary([]) == {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}


def _state(total: int, available: int, held: int, sold: int = 0) -> SkuState:
    return SkuState(total=total, available=available, held=held, sold=sold)


def test_check_skus_passes_a_sold_out_head_and_a_selling_tail() -> None:
    stock = {"a": _state(3, 0, 3), "b": _state(3, 2, 1), "c": _state(3, 3, 0)}
    check = check_skus(stock, successes={"a": 3, "b": 1}, sold_out={"a": 5})
    assert (check["oversell"], check["undersell"], check["unbacked_successes"], check["inconsistent"]) == (0, 0, 0, 0)
    assert (check["skus_sold_out"], check["skus_refused_sold_out"], check["client_successes"]) == (1, 1, 4)


def test_check_skus_counts_client_successes_beyond_stock_as_oversell() -> None:
    check = check_skus({"a": _state(3, 0, 3)}, successes={"a": 5}, sold_out={})
    assert check["oversell"] == 2
    assert check["oversell_skus"] == {"a": 2}


def test_check_skus_counts_server_holds_beyond_stock_and_negative_stock_as_oversell() -> None:
    check = check_skus({"a": _state(3, -1, 4)}, successes={"a": 3}, sold_out={})
    assert check["oversell"] == 1 + 1


def test_check_skus_flags_sold_out_refusals_while_stock_remained_as_undersell() -> None:
    check = check_skus({"a": _state(5, 2, 3), "b": _state(5, 4, 1)}, successes={"a": 3, "b": 1}, sold_out={"a": 1})
    assert check["undersell"] == 2
    assert check["undersell_skus"] == {"a": 2}


def test_check_skus_flags_successes_without_a_held_unit() -> None:
    check = check_skus({"a": _state(5, 4, 1)}, successes={"a": 2}, sold_out={})
    assert check["unbacked_successes"] == 1


def test_check_skus_flags_broken_invariant_and_unknown_skus() -> None:
    check = check_skus({"a": _state(5, 5, 1)}, successes={"zz": 1}, sold_out={})
    assert check["inconsistent"] == 1
    assert check["unknown_skus"] == ["zz"]


def _run(read_status: dict, reserve_status: dict, codes: dict | None = None, **skus: int) -> dict:
    check = check_skus({"a": _state(1, 0, 1)}, {"a": 1}, {})
    check.update(skus)
    return {
        "skus": check,
        "types": {
            "read": {"status": read_status, "5xx": sum(v for k, v in read_status.items() if k.startswith("5")),
                     "error_codes": {}},
            "reserve": {"status": reserve_status,
                        "5xx": sum(v for k, v in reserve_status.items() if k.startswith("5")),
                        "error_codes": codes if codes is not None else {"sold_out": reserve_status.get("409", 0)}},
        },
        "unattributed": 0,
        "transport_errors": 0,
    }


def test_failures_empty_for_a_clean_run() -> None:
    assert failures(_run({"200": 90}, {"201": 4, "409": 6})) == []


def test_failures_report_oversell_undersell_and_5xx() -> None:
    out = failures(_run({"200": 90, "503": 1}, {"201": 4}, oversell=2, undersell=1))
    assert "oversell 2" in out and "undersell 1" in out
    assert any("5xx on read" in f for f in out)


def test_failures_report_answers_the_mix_should_never_get() -> None:
    out = failures(_run({"200": 90, "401": 3}, {"201": 4, "409": 6}, codes={"sold_out": 5, "limit_exceeded": 1}))
    assert any("unexpected read statuses" in f for f in out)
    assert any("limit_exceeded" in f for f in out)
