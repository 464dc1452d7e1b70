"""`python -m chaos`: every scenario (or --smoke / --scenario NAME) on its own stack; exit 1 on a broken invariant."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import install_signal_handlers
from chaos.load import LoadSize
from chaos.scenarios import BY_NAME, SCENARIOS, SMOKE

RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    p.add_argument("--smoke", action="store_true", help=f"a few scenarios, small load: {', '.join(SMOKE)}")
    p.add_argument("--scenario", action="append", choices=sorted(BY_NAME), metavar="NAME",
                   help="run only this scenario (repeatable); " + ", ".join(BY_NAME))
    p.add_argument("--buyers", type=int, help="concurrent buyers (default 16; smoke 6)")
    p.add_argument("--seconds", type=float, help="load per scenario, at least (default 14; smoke 6)")
    p.add_argument("--seed", type=int, default=1, help="seeds the buyers' choices")
    p.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and Markdown go")
    p.add_argument("--name", default="", help="file stem of the results (default: smoke or full)")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (printed path); kept anyway when a scenario fails")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from chaos.report import environment, write
    from chaos.run import run_scenario

    args = parse(sys.argv[1:] if argv is None else argv)
    install_signal_handlers()
    names = args.scenario or (SMOKE if args.smoke else [s.name for s in SCENARIOS])
    size = LoadSize(buyers=args.buyers or (6 if args.smoke else 16),
                    seconds=args.seconds or (6.0 if args.smoke else 14.0), hold_ttl_s=4 if args.smoke else 8)
    stem = args.name or ("smoke" if args.smoke else "full" if not args.scenario else "selected")
    command = "python -m chaos " + shlex.join(sys.argv[1:] if argv is None else argv)
    started, outcomes, env = time.time(), [], environment()  # versions and commit as the run starts
    work = Path(tempfile.mkdtemp(prefix="flashstock-chaos-"))
    try:
        for name in names:
            outcome = run_scenario(BY_NAME[name], size, work, args.seed, lean=args.smoke)
            outcomes.append(outcome)
            marks = " ".join(f"{v.name}:{'ok' if v.ok else 'FAIL'}" for v in outcome.verdicts)
            print(f"[chaos] {name:20s} {'ok  ' if outcome.ok else 'FAIL'} {outcome.seconds:5.1f}s "
                  f"acked {outcome.acknowledged} recovery "
                  f"{'-' if outcome.recovery_s is None else f'{outcome.recovery_s:.1f}s'}  {marks}", flush=True)
            if outcome.error:
                print(outcome.error, file=sys.stderr)
    finally:
        if outcomes:
            json_path, md_path = write(outcomes, args.out, stem, command, started, env)
            print(f"[chaos] results: {json_path} {md_path} ({time.time() - started:.0f} s)")
        if args.keep_logs or not (outcomes and all(o.ok for o in outcomes)):  # a failure's logs are its evidence
            print(f"[chaos] logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if outcomes and all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
