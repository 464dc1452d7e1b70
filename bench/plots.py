"""PNG plots of a results document: throughput, latency percentiles, sell-out curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _targets(runs: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["target"] for r in runs))


def throughput(runs: list[dict], path: Path) -> None:
    """Requests/s against connections, one line per target."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for t in _targets(runs):
        pts = sorted((r["connections"], r["load"]["rps"]) for r in runs if r["target"] == t)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=t)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("connections")
    ax.set_ylabel("requests/s (all answers)")
    ax.set_title("Hot SKU sell-out: throughput vs connections")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency(runs: list[dict], path: Path) -> None:
    """p50/p95/p99/max per target and connection count (log scale)."""
    keys = ["p50", "p95", "p99", "max"]
    labels = [f"{r['target']}\n@{r['connections']}" for r in runs]
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(runs)), 4.8))
    width = 0.8 / len(keys)
    for i, k in enumerate(keys):
        vals = [r["load"]["latency_ms"][k] or 0 for r in runs]
        ax.bar([x + i * width for x in range(len(runs))], vals, width, label=k)
    ax.set_xticks([x + 1.5 * width for x in range(len(runs))], labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Hot SKU sell-out: latency percentiles")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sellout(runs: list[dict], success_t: dict[tuple[str, int], list[float]], path: Path) -> None:
    """Units left over time, one panel per connection count."""
    conns = sorted({r["connections"] for r in runs})
    fig, axes = plt.subplots(1, len(conns), figsize=(6 * len(conns), 4.5), squeeze=False)
    for ax, c in zip(axes[0], conns):
        for r in (r for r in runs if r["connections"] == c):
            ts = success_t.get((r["target"], c), [])
            units = r["sellout"]["units"]
            xs = [0.0] + list(ts)
            ys = [units] + [units - i for i in range(1, len(ts) + 1)]
            ax.step(xs, ys, where="post", label=r["target"])
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("seconds since load start")
        ax.set_ylabel("units left")
        ax.set_title(f"Sell-out curve, {c} connections")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_curves(csv_path: Path) -> dict[tuple[str, int], list[float]]:
    """Success timestamps per (target, connections) from a *_success_t.csv, sorted."""
    import csv

    out: dict[tuple[str, int], list[float]] = {}
    with csv_path.open() as f:
        for row in csv.DictReader(f):
            out.setdefault((row["target"], int(row["connections"])), []).append(float(row["t_s"]))
    return {k: sorted(v) for k, v in out.items()}


def write_all(runs: list[dict], success_t: dict[tuple[str, int], list[float]], out_dir: Path, label: str) -> list[Path]:
    """Write the three plots; return their paths."""
    paths = [out_dir / f"{label}_throughput.png", out_dir / f"{label}_latency.png", out_dir / f"{label}_sellout.png"]
    throughput(runs, paths[0])
    latency(runs, paths[1])
    sellout(runs, success_t, paths[2])
    return paths


def main(argv: list[str] | None = None) -> int:
    """Redraw the plots of an existing results label: python -m bench.plots bench/results hot_sku."""
    import json
    import sys

    out_dir, label = (argv or sys.argv[1:])[:2]
    d = Path(out_dir)
    runs = json.loads((d / f"{label}.json").read_text())["runs"]
    for p in write_all(runs, load_curves(d / f"{label}_success_t.csv"), d, label):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
