"""locust FastHttpUser driver (generator evaluation only; run from a venv that has locust)."""

from __future__ import annotations

import itertools
import json
import time

from locust import FastHttpUser, constant, events, task

_ids = itertools.count()
_status: dict[int, int] = {}
_success_t: list[float] = []
_t0 = time.perf_counter()


@events.init_command_line_parser.add_listener
def _args(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--sku", default="hot-1")
    parser.add_argument("--tag", default="L")
    parser.add_argument("--result-json", default="locust-result.json")


class Buyer(FastHttpUser):
    """One closed-loop buyer per locust user."""

    wait_time = constant(0)

    @task
    def reserve(self) -> None:
        """POST one single-unit reservation with a fresh user id."""
        opts = self.environment.parsed_options
        body = {"user_id": f"{opts.tag}-{next(_ids)}", "items": [{"sku": opts.sku, "qty": 1}]}
        with self.client.post("/v1/reservations", json=body, catch_response=True) as resp:
            _status[resp.status_code] = _status.get(resp.status_code, 0) + 1
            if resp.status_code == 201:
                _success_t.append(time.perf_counter() - _t0)
            if resp.status_code in (201, 409):
                resp.success()


@events.quitting.add_listener
def _write(environment, **_kw) -> None:  # type: ignore[no-untyped-def]
    total = environment.stats.total
    elapsed = max(total.last_request_timestamp - total.start_time, 1e-9) if total.num_requests else 0.0
    done = sum(_status.values())
    out = {
        "generator": "locust",
        "connections": environment.parsed_options.num_users,
        "requests": done,
        "elapsed_s": round(elapsed, 3),
        "rps": round(done / elapsed, 1) if elapsed else 0.0,
        "status": {
            "201": _status.get(201, 0),
            "409": _status.get(409, 0),
            "5xx": sum(v for k, v in _status.items() if 500 <= k < 600),
            "other": sum(v for k, v in _status.items() if k not in (201, 409) and not 500 <= k < 600),
            "transport_errors": _status.get(0, 0),
        },
        "error_codes": {},
        "latency_ms": {
            "p50": total.get_response_time_percentile(0.5),
            "p95": total.get_response_time_percentile(0.95),
            "p99": total.get_response_time_percentile(0.99),
            "p999": total.get_response_time_percentile(0.999),
            "max": total.max_response_time,
        },
        "success_t": _success_t,
        "exact_accounting": False,
    }
    with open(environment.parsed_options.result_json, "w") as f:
        json.dump(out, f)
