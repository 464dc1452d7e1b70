"""Full-flow scenario accounting: agreement checks, lag and drain-rate arithmetic, webhook signing."""

from __future__ import annotations

from datetime import UTC

from bench.flow_check import (
    ClientOrder,
    DbOrder,
    Sample,
    SkuState,
    drain_after_stall,
    expected_sold,
    lag_series,
    lag_trend,
    order_agreement,
    rate,
    stats,
    stock_agreement,
)
from bench.flowgen import Flow, FlowRun, StepStats, webhook_headers
from bench.full_flow import client_orders, phase_failures


def _orders() -> tuple[list[ClientOrder], dict[str, DbOrder]]:
    client = [ClientOrder("o_1", "u1", "A", 1, "paid"), ClientOrder("o_2", "u2", "A", 1, "payment_failed"),
              ClientOrder("o_3", "u3", "B", 1, "paid")]
    db = {o.order_id: DbOrder(o.order_id, o.user, o.status or "pending_payment", ((o.sku, o.qty),)) for o in client}
    return client, db


def test_orders_agree_when_postgres_has_each_accepted_order_with_its_status() -> None:
    client, db = _orders()
    assert order_agreement(client, db) == []


def test_order_agreement_reports_missing_extra_wrong_status_and_wrong_lines() -> None:
    client, db = _orders()
    del db["o_1"]
    db["o_2"] = DbOrder("o_2", "u2", "paid", (("A", 1),))
    db["o_3"] = DbOrder("o_3", "u3", "paid", (("A", 1),))
    db["o_9"] = DbOrder("o_9", "u9", "paid", (("A", 1),))
    problems = " | ".join(order_agreement(client, db))
    assert "1 accepted orders missing in Postgres: o_1" in problems
    assert "o_2 paid!=payment_failed" in problems
    assert "another user or lines in Postgres: o_3" in problems
    assert "no checkout returned: o_9" in problems


def test_order_agreement_reports_an_order_id_given_to_two_checkouts() -> None:
    client, db = _orders()
    client.append(ClientOrder("o_1", "u4", "A", 1, "paid"))
    assert any("more than one checkout: o_1" in p for p in order_agreement(client, db))


def test_an_order_without_a_known_final_status_is_checked_for_presence_only() -> None:
    client, db = _orders()
    client[0] = ClientOrder("o_1", "u1", "A", 1, None)
    assert order_agreement(client, db) == []


def test_failed_payments_return_their_units_so_only_paid_orders_count_as_sold() -> None:
    client, _ = _orders()
    assert expected_sold(client) == {"A": 1, "B": 1}


def test_stock_agrees_when_redis_and_ledger_match_the_clients_orders() -> None:
    redis = {"A": SkuState(10, 8, 1, 1), "B": SkuState(5, 4, 0, 1)}
    ledger = {"A": (10, 1), "B": (5, 1)}
    assert stock_agreement({"A": 10, "B": 5}, {"A": 1, "B": 1}, {"A": 1}, redis, ledger) == []


def test_stock_agreement_reports_each_side_that_differs() -> None:
    redis = {"A": SkuState(10, 9, 0, 1), "B": None}
    ledger = {"A": (10, 2)}
    problems = stock_agreement({"A": 10, "B": 5}, {"A": 1}, {}, redis, ledger)
    assert problems == [
        "A: Postgres ledger total/sold 10/2 != 10/1",
        "B: Redis None != expected SkuState(total=5, available=5, held=0, sold=0)",
        "B: Postgres ledger total/sold 0/0 != 5/0",
    ]


def test_stats_percentiles_and_empty_sample() -> None:
    s = stats(list(range(1, 101)))
    assert (s["n"], s["min"], s["p50"], s["max"]) == (100, 1, 50.5, 100)
    assert stats([])["p99"] is None


def test_lag_trend_compares_the_first_and_last_tenth_by_time() -> None:
    points = [(float(t), 10.0 if t < 50 else 40.0) for t in range(100)][::-1]  # order of input does not matter
    trend = lag_trend(points)
    assert trend["first"]["n"] == trend["last"]["n"] == 10
    assert (trend["first"]["p50"], trend["last"]["p50"], trend["last_over_first_p50"]) == (10.0, 40.0, 4.0)


def test_lag_series_bins_by_second_since_start() -> None:
    series = lag_series([(100.2, 1.0), (100.7, 3.0), (102.1, 5.0)], 100.0)
    assert [(b["t_s"], b["n"], b["max"]) for b in series] == [(0.0, 2, 3.0), (2.0, 1, 5.0)]


def test_rates_come_from_entries_added_and_removed_between_samples() -> None:
    samples = [Sample(0.0, 0, 0), Sample(1.0, 10, 100), Sample(2.0, 0, 200)]
    assert rate(samples, 0.0, 2.0, "added") == 100.0
    assert rate(samples, 0.0, 2.0, "removed") == 100.0
    assert rate(samples[:1], 0.0, 2.0, "added") is None


def test_drain_after_stall_measures_from_resume_until_the_backlog_is_back_to_normal() -> None:
    # Worker stopped: 1000 entries pile up; resumed at t=10; back under 20 entries at t=10.5.
    samples = [Sample(9.0, 900, 900), Sample(10.0, 1000, 1000), Sample(10.25, 500, 1050), Sample(10.5, 10, 1100),
               Sample(11.0, 0, 1200)]
    d = drain_after_stall(samples, 10.0, 20)
    assert d["backlog_at_resume"] == 1000 and d["cleared"] and d["clear_s"] == 0.5
    assert d["drain_entries_per_s"] == (1090 - 0) / 0.5
    assert d["arrival_entries_per_s"] == 200.0


def test_drain_after_stall_says_when_the_backlog_never_cleared() -> None:
    d = drain_after_stall([Sample(10.0, 1000, 1000), Sample(11.0, 900, 1100)], 10.0, 20)
    assert not d["cleared"] and d["clear_s"] is None and d["drain_entries_per_s"] == 200.0


def _flow(i: int, outcome: str, pay: str = "paid", status: str | None = "paid") -> Flow:
    return Flow(i, f"u{i}", "A", pay, outcome, f"r_{i}", f"o_{i}" if outcome != "checkout_rejected" else None,
                None, None, status if outcome == "completed" else None)


def test_client_orders_are_the_checkouts_that_returned_an_order() -> None:
    flows = [_flow(1, "completed"), _flow(2, "webhook_error"), _flow(3, "checkout_rejected")]
    assert client_orders(flows) == [ClientOrder("o_1", "u1", "A", 1, "paid"), ClientOrder("o_2", "u2", "A", 1, None)]


def test_phase_failures_flag_5xx_transport_errors_and_a_wrong_payment_result() -> None:
    run = FlowRun(flows=[_flow(1, "completed"), _flow(2, "completed", pay="failed", status="paid"),
                         _flow(3, "sold_out")])
    run.steps["checkout"].record(503, 0.01, b'{"error": {"code": "unavailable"}}')
    run.steps["webhook"].transport_errors = 2
    problems = phase_failures("steady", run)
    assert problems[:2] == ["steady/checkout: 1 5xx", "steady/webhook: 2 transport errors"]
    assert "'failed->paid': 1" in problems[2] and "unavailable" in problems[2]


def test_phase_without_problems_has_no_failures() -> None:
    run = FlowRun(flows=[_flow(1, "completed"), _flow(2, "sold_out")])
    run.steps["reserve"].record(201, 0.001, b"{}")
    assert phase_failures("steady", run) == []


def test_step_stats_summary_counts_and_percentiles() -> None:
    s = StepStats()
    for ms in (1, 2, 3, 4, 100):
        s.record(201, ms / 1000, b"")
    s.record(409, 0.005, b'{"error": {"code": "sold_out"}}')
    out = s.summary(2.0)
    assert out["requests"] == 6 and out["rps"] == 3.0 and out["status"] == {"201": 5, "409": 1}
    assert out["error_codes"] == {"sold_out": 1} and 99 <= out["latency_ms"]["max"] <= 101


def test_the_clients_webhook_signature_is_accepted_by_the_products_verifier() -> None:
    from datetime import datetime

    from standardwebhooks.webhooks import Webhook

    from api.webhooks import WebhookVerifier

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"event_id":"evt-1","order_id":"o_1","status":"paid"}'
    now = datetime(2026, 1, 1, tzinfo=UTC)
    lines = webhook_headers(Webhook(secret), "msg-1", body, now).strip().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    WebhookVerifier([secret], 300).verify(body, headers, int(now.timestamp() * 1000))  # raises if refused
