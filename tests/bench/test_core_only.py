"""Pure logic of bench/core_only.py: the redis-benchmark command, its CSV, counters, ratios."""

from __future__ import annotations

import pytest

from inventory.keys import KeySpace

from bench.core_only import PREFIX, benchmark_command, capture_reserve, counter_failures, parse_benchmark_csv, ratios

CSV = (
    '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",'
    '"max_latency_ms"\n'
    '"EVALSHA abc 6 fs:{res:__rand_int__} x","31347.96","0.047","0.016","0.047","0.095","0.127","3.495"\n'
)


def test_parse_benchmark_csv_reads_rps_and_latencies():
    stats = parse_benchmark_csv("WARNING: something\n" + CSV)
    assert stats["rps"] == pytest.approx(31347.96)
    assert stats["p99_latency_ms"] == pytest.approx(0.127)
    assert set(stats) == {"rps", "avg_latency_ms", "min_latency_ms", "p50_latency_ms", "p95_latency_ms",
                          "p99_latency_ms", "max_latency_ms"}


def test_parse_benchmark_csv_without_result_raises():
    with pytest.raises(ValueError):
        parse_benchmark_csv("Error: Connection refused\n")


def test_captured_call_is_the_cores_reserve_shape():
    keys, args, token, user = capture_reserve("fs", "HOT-1")
    part = KeySpace("fs").of_sku("HOT-1")
    assert keys == [part.reservation(token), part.expiries, part.dirty, part.sale_switch,
                    *part.sku("HOT-1").as_indexed_list(token), part.record_bucket(token)]
    assert args[:2] == [token, user] and args[-4:] == ["", "", "HOT-1", 1]


def test_benchmark_command_randomises_token_and_user_only():
    keys, args, token, user = capture_reserve(PREFIX, "S-1")
    argv = benchmark_command("sha1", keys, args, token, user, "h01")
    assert argv[:3] == ["EVALSHA", "sha1", str(len(keys))]
    record, rest, argv_args = argv[3], argv[4:3 + len(keys)], argv[3 + len(keys):]
    assert "__rand_int____rand_int__" in record and token not in record
    assert rest == keys[1:]
    assert argv_args[0] == "h01__rand_int____rand_int__" + token[-3:]
    assert record == KeySpace(PREFIX).parts[0].reservation(argv_args[0])
    assert argv_args[1] == "u__rand_int__" and len(argv_args[1]) == len(user)
    assert argv_args[2:] == [str(a) for a in args[2:]]


def test_benchmark_command_refuses_an_unexpected_argv():
    with pytest.raises(ValueError):
        benchmark_command("sha1", ["k"], ["user", "token"], "token", "user", "h01")


@pytest.mark.parametrize("run_tag", ["", "h01-", "h" * 10])
def test_benchmark_command_needs_a_short_alphanumeric_run_tag(run_tag):
    keys, args, token, user = capture_reserve(PREFIX, "S-1")
    with pytest.raises(ValueError):
        benchmark_command("sha1", keys, args, token, user, run_tag)


def test_counter_failures_accepts_counts_that_add_up():
    fields = {"total": "1000", "avail": "700", "held": "300", "sold": "0"}
    assert counter_failures("p", fields, initial=1000, held=300, holds=300) == []


@pytest.mark.parametrize("fields,held,holds,needle", [
    ({"total": "1000", "avail": "701", "held": "300", "sold": "0"}, 300, 300, "available"),
    ({"total": "1000", "avail": "701", "held": "299", "sold": "0"}, 300, 299, "held 299"),
    ({"total": "1000", "avail": "700", "held": "300", "sold": "0"}, 300, 298, "hold entries"),
    ({"total": "1001", "avail": "701", "held": "300", "sold": "0"}, 300, 300, "total"),
])
def test_counter_failures_names_each_mismatch(fields, held, holds, needle):
    problems = counter_failures("p", fields, initial=1000, held=held, holds=holds)
    assert any(needle in p for p in problems)


def _phase(driver, mode, width, ops, client=None):
    return {"driver": driver, "mode": mode, "width": width, "ops_per_s": ops, "client": client}


def test_ratios_matched_concurrency_and_best():
    phases = [_phase("core", "hold", 1, 3000, "tuned"), _phase("core", "hold", 2, 5000, "tuned"),
              _phase("redis-py", "hold", 1, 6000, "tuned"), _phase("core", "sold_out", 1, 4000, "tuned"),
              _phase("redis-benchmark", "hold", 1, 10000), _phase("redis-benchmark", "hold", 2, 20000),
              _phase("redis-benchmark", "hold", 50, 40000), _phase("redis-benchmark", "sold_out", 1, 16000)]
    r = ratios(phases)["tuned"]
    assert r["core_1proc_vs_rb_c1"] == 0.3
    assert r["core_2proc_vs_rb_c2"] == 0.25
    assert r["core_1proc_vs_rb_best"] == 0.075
    assert r["core_2proc_vs_rb_best"] == 0.125
    assert r["sold_out_core_1proc_vs_rb_c1"] == 0.25
    assert r["redispy_1proc_vs_rb_c1"] == 0.6
    assert r["core_1proc_vs_redispy_1proc"] == 0.5


def test_ratios_missing_phase_is_none():
    r = ratios([_phase("core", "hold", 1, 3000, "product")])["product"]
    assert r["core_1proc_vs_rb_c1"] is None and r["core_1proc_vs_rb_best"] is None
