"""The results of a run as JSON and as a Markdown table (one row per scenario)."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from chaos.run import RECOVERY_BOUND_S, Outcome

INVARIANTS = ["I1", "I2", "I3", "I4", "I5", "I6"]
# The counts that decide each invariant, shown in the table (all are in the JSON).
SHOWN = {"I1": ["skus", "units_total"], "I2": ["units_sold", "stock"],
         "I3": ["checkouts_202", "pg_orders", "phantom_orders", "payments_acked", "keys_run_twice",
                "lost_in_documented_window"],
         "I4": ["user_sku_pairs", "at_limit"], "I5": ["answers", "errors", "status_500", "no_answer",
                                                       "bad_requests_refused"],
         "I6": ["recovery_ms", "crashed"]}


def environment() -> dict[str, str]:
    """Machine and versions, for the report's header."""
    def out(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "unknown"

    import celery
    import gevent
    import gunicorn

    return {"machine": f"{platform.machine()}, {_cpus()} cores, {platform.system()} {platform.release()}",
            "python": platform.python_version(), "redis": out("redis-server", "--version"),
            "postgresql": out("psql", "--version"), "gunicorn": gunicorn.__version__, "gevent": gevent.__version__,
            "celery": celery.__version__, "commit": out("git", "rev-parse", "--short", "HEAD")}


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def to_json(outcomes: list[Outcome], command: str, started: float, env: dict[str, str]) -> dict[str, Any]:
    return {"command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(time.time() - started, 1), "environment": env,
            "recovery_bound_s": RECOVERY_BOUND_S, "ok": all(o.ok for o in outcomes),
            "scenarios": [{"scenario": o.scenario, "fault": o.fault, "load": o.load, "ok": o.ok,
                           "seconds": round(o.seconds, 1),
                           "recovery_s": None if o.recovery_s is None else round(o.recovery_s, 2),
                           "acknowledged": o.acknowledged, "error": o.error, "notes": o.notes,
                           "invariants": {v.name: v.as_dict() for v in o.verdicts}} for o in outcomes]}


def _cell(o: Outcome, name: str) -> str:
    v = next((v for v in o.verdicts if v.name == name), None)
    if v is None:
        return "not run"
    counts = ", ".join(f"{k} {v.counts[k]}" for k in SHOWN[name] if k in v.counts)
    return f"{'pass' if v.ok else '**FAIL**'} ({counts})"


def to_markdown(outcomes: list[Outcome], command: str) -> str:
    """The results table and, below it, every failure with its first problems."""
    head = ["scenario", "load", "fault", "recovery", "acked", *INVARIANTS, "scenario checks"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for o in outcomes:
        extra = [v for v in o.verdicts if v.name not in INVARIANTS]
        checks = "; ".join(f"{v.name} {'pass' if v.ok else '**FAIL**'}" for v in extra) or "-"
        rec = "-" if o.recovery_s is None else f"{o.recovery_s:.1f} s"
        lines.append("| " + " | ".join([o.scenario, o.load, o.fault, rec, str(o.acknowledged),
                                        *(_cell(o, n) for n in INVARIANTS), checks]) + " |")
    restarted = [(o.scenario, r) for o in outcomes for r in o.notes.get("supervisor_restarts", [])]
    if restarted:  # a worker's consumer stalled and it asked to be restarted (sync/consumer_watchdog.py)
        lines += ["", "### Restarted by the supervisor (exit 75)", ""]
        lines += [f"- **{scenario}**: {r['process']} at {r['at']}" for scenario, r in restarted]
    failures = [o for o in outcomes if not o.ok]
    if failures:
        lines += ["", "### Failures", ""]
        for o in failures:
            if o.error:
                lines.append(f"- **{o.scenario}**: harness error `{o.error.splitlines()[0]}`")
            for v in o.verdicts:
                if not v.ok:
                    lines.append(f"- **{o.scenario} {v.name}**: " + "; ".join(v.problems[:5]))
    return f"Command: `{command}`\n\n" + "\n".join(lines) + "\n"


def write(outcomes: list[Outcome], out_dir: Path, stem: str, command: str, started: float,
          env: dict[str, str]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(to_json(outcomes, command, started, env), indent=2, sort_keys=True) + "\n")
    md_path.write_text(to_markdown(outcomes, command))
    return json_path, md_path
