"""Scenario logic: hot-SKU sell-out accounting (oversell / undersell) and cross-target ratios."""

from __future__ import annotations

from typing import Optional


def sellout_metrics(units: int, load: dict, remaining: int, holds: Optional[int]) -> dict:
    """Oversell, undersell and consistency of one sell-out run.

    oversell: units handed out beyond the stock, by the worst of three witnesses (client 201s,
    stock decrement, hold rows). undersell: units still on the shelf although some buyer was
    refused. phantom: units the server took that no client saw succeed (only meaningful
    when the generator's accounting is exact).
    """
    st = load["status"]
    successes = st["201"]
    sold = units - remaining
    witnesses = [successes, sold] + ([holds] if holds is not None else [])
    refused = st["409"] + st["5xx"] + st["other"] + st["transport_errors"]
    success_t = load.get("success_t") or []
    return {
        "units": units,
        "successes": successes,
        "sold_by_stock": sold,
        "holds": holds,
        "remaining": remaining,
        "oversell": max(0, max(witnesses) - units) + max(0, -remaining),
        "undersell": remaining if (refused > 0 and remaining > 0) else 0,
        "phantom": (sold - successes) if load.get("exact_accounting") else None,
        "holds_match_stock": None if holds is None else holds == sold,
        "sellout_s": round(success_t[-1], 4) if success_t and successes >= units else None,
    }


def failures(run: dict) -> list[str]:
    """Reasons this run must fail the command (empty when it passed)."""
    m, st = run["sellout"], run["load"]["status"]
    out = []
    if m["oversell"]:
        out.append(f"oversell {m['oversell']}")
    if m["undersell"]:
        out.append(f"undersell {m['undersell']}")
    if st["5xx"]:
        out.append(f"{st['5xx']} 5xx responses")
    if st["transport_errors"]:
        out.append(f"{st['transport_errors']} transport errors")
    if m["holds_match_stock"] is False:
        out.append(f"holds {m['holds']} != sold {m['sold_by_stock']}")
    if m["phantom"]:
        out.append(f"{m['phantom']} units taken without a 201")
    return out


def ratios(runs: list[dict]) -> dict:
    """rps and p99 of every target relative to every other, per connection count."""
    by = {(r["target"], r["connections"]): r["load"] for r in runs}
    out: dict = {}
    for (subj, conns), a in by.items():
        for (ref, conns2), b in by.items():
            if ref == subj or conns2 != conns or not b["rps"] or not b["latency_ms"]["p99"]:
                continue
            out.setdefault(subj, {}).setdefault(ref, {})[str(conns)] = {
                "rps": round(a["rps"] / b["rps"], 3),
                "p99": round(a["latency_ms"]["p99"] / b["latency_ms"]["p99"], 3),
            }
    return out
