"""PNG of the full-flow scenario: persistence lag and outbox backlog over the run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.flow_check import lag_series


def lag_over_time(lag_rows: list[list], backlog_rows: list[list], doc: dict, path: Path) -> Path:
    """Top: each order's lag (checkout answer -> row in PostgreSQL) with per-second p50/p99.
    Bottom: outbox entries waiting; the worker-stopped window shaded."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    t = [r[6] for r in lag_rows]
    top.scatter(t, [r[7] for r in lag_rows], s=2, alpha=0.2, color="tab:gray", label="order (from its 202)")
    for col, name, style in ((7, "from the 202", "-"), (8, "from the checkout request", "--")):
        series = lag_series([(r[6], r[col]) for r in lag_rows], 0.0)
        for key, color in (("p50", "tab:blue"), ("p99", "tab:red")):
            top.plot([b["t_s"] + 0.5 for b in series], [b[key] for b in series], color=color, ls=style,
                     label=f"{key} per second, {name}")
    # symlog: a row can be in PostgreSQL before the checkout's answer reaches the client (negative lag)
    top.set_yscale("symlog", linthresh=10)
    top.set_ylabel("persistence lag (ms)")
    top.set_title(f"Full flow: checkout -> PostgreSQL row ({doc['plan']['connections']} users)")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=7)
    bottom.plot([r[1] for r in backlog_rows], [r[2] for r in backlog_rows], color="tab:purple", lw=1)
    stall = doc["persistence"]["stall"]
    if "stopped_t_s" in stall and "resumed_t_s" in stall:
        for ax in (top, bottom):
            ax.axvspan(stall["stopped_t_s"], stall["resumed_t_s"], color="tab:orange", alpha=0.2,
                       label="worker stopped")
        bottom.legend(loc="upper left", fontsize=8)
    bottom.set_xlabel("seconds since the warm-up started")
    bottom.set_ylabel("outbox entries waiting")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
