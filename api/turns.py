"""Per-answer work that a server's event loop asks to have done once per turn of the loop instead."""

from __future__ import annotations

from typing import Any, Callable

Schedule = Callable[[Callable[[], None]], Any]  # e.g. gevent's loop.run_callback


class PerTurn:
    """Gathers work during a turn of an event loop and does it in `flush` when the turn's greenlets have
    run, before the server next waits for I/O; done at once until a server asks (tests, the dev server)."""

    def __init__(self) -> None:
        self._schedule: Schedule | None = None
        self._due = False  # a flush is scheduled for the end of this turn

    def gather_per_turn(self, schedule: Schedule | None) -> None:
        """From now on hand the work to `schedule(callback)` once per turn (None: do it at once)."""
        self.flush()
        self._schedule = schedule

    def defer(self) -> bool:
        """True when work is to wait for the end of this turn (a flush is then scheduled for it); False
        when the caller does it at once."""
        if self._schedule is None:
            return False
        if not self._due:
            self._due = True
            self._schedule(self._end_of_turn)
        return True

    def _end_of_turn(self) -> None:
        self._due = False
        self.flush()

    def flush(self) -> None:
        """Do whatever work is waiting."""
        raise NotImplementedError
