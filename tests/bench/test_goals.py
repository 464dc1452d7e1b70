"""bench/goals.py: a value against its limit."""

from __future__ import annotations

from bench.goals import at_most, verdict


def test_at_most_met():
    goal = at_most(250.0, 300, "B")
    assert goal["met"] and goal["over_by"] == 0 and goal["over_by_pct"] == 0
    assert verdict(goal) == "250 B <= 300 B: met"


def test_at_most_missed_says_by_how_much():
    goal = at_most(450.0, 300, "B")
    assert not goal["met"] and goal["over_by"] == 150 and goal["over_by_pct"] == 50
    assert verdict(goal) == "450 B > 300 B: MISSED by 150 B (50%)"


def test_at_most_limit_itself_is_met():
    assert at_most(2.0, 2.0, "x")["met"]


def test_not_measured_is_not_met():
    goal = at_most(None, 2.0)
    assert not goal["met"] and verdict(goal) == "not measured"
