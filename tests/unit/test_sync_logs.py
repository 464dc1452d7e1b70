"""sync/logs.py: every line the worker and beat write is one JSON object, also what Python can only report."""

from __future__ import annotations

import gc
import json
import logging
import sys
from typing import Any, Iterator

import pytest

from sync.logs import configure_logging


class _RaisesWhenCollected:
    def __del__(self) -> None:
        raise SystemExit("stop signal during a finalizer")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.unraisablehook
    yield
    root.handlers, root.level, sys.unraisablehook = handlers, level, hook
    logging.captureWarnings(False)


def test_an_exception_python_cannot_raise_is_logged_as_one_json_line(
        restored_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    doomed: Any = _RaisesWhenCollected()
    del doomed
    gc.collect()
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [(line["logger"], line["level"]) for line in lines] == [("python.unraisable", "warning")]
    assert "Exception ignored" in lines[0]["event"] and "SystemExit" in lines[0]["exception"]
    assert captured.err == ""


def test_when_logging_fails_python_reports_it_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    from sync import logs

    reported: list[Any] = []
    monkeypatch.setattr(sys, "__unraisablehook__", reported.append)
    def torn_down(name: str) -> Any:  # as at interpreter exit
        raise RuntimeError("logging is gone")

    monkeypatch.setattr(logs, "logging", type("Gone", (), {"getLogger": staticmethod(torn_down)}))
    unraisable = type("U", (), {"err_msg": None, "object": None, "exc_type": ValueError,
                                "exc_value": ValueError("x"), "exc_traceback": None})()
    logs.log_unraisable(unraisable)
    assert reported == [unraisable]
