"""The chaos stack restarts a process that exits asking for it (75), as a supervisor would; other exits stay crashes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from chaos.stack import ChaosStack, Spec
from sync.consumer_watchdog import EXIT_CODE


def test_an_exit_with_75_is_restarted_and_reported_and_any_other_exit_stays_a_crash(tmp_path: Path) -> None:
    stack = ChaosStack(tmp_path, "supervisor")
    env = dict(os.environ)
    stack.specs["stalled"] = Spec([sys.executable, "-c", f"import sys; print('run'); sys.exit({EXIT_CODE})"], env)
    stack.specs["broken"] = Spec([sys.executable, "-c", "import sys; sys.exit(3)"], env)
    try:
        for name in ("stalled", "broken"):
            stack._launch(name)
        first = stack.live["stalled"]
        for proc in list(stack.live.values()):
            proc.wait(30)

        stack.supervise()

        assert [entry["process"] for entry in stack.supervised] == ["stalled"]
        assert stack.live["stalled"] is not first  # started again
        assert stack.crashed() == {"broken": 3}
        stack.live["stalled"].wait(30)
        time.sleep(0.1)
        assert (tmp_path / "logs" / "stalled.log").read_text().count("run") == 2
    finally:
        stack.procs.stop_all()


def test_the_report_lists_each_restart_under_its_scenario_and_says_nothing_without_one() -> None:
    from chaos.report import to_markdown
    from chaos.run import Outcome

    quiet = Outcome("baseline", "none", "1 x 1 s", 1.0, 0.1, 10, [], {"supervisor_restarts": []})
    stalled = Outcome("redis_kill9", "kill", "1 x 1 s", 1.0, 2.0, 10, [],
                      {"supervisor_restarts": [{"process": "worker1", "at": 1764851000.5}]})
    assert "Restarted by the supervisor" not in to_markdown([quiet], "cmd")
    report = to_markdown([quiet, stalled], "cmd")
    assert "### Restarted by the supervisor (exit 75)" in report
    assert "- **redis_kill9**: worker1 at 1764851000.5" in report
