"""gunicorn's gevent worker, accepting new connections in small bursts instead of one per loop turn.

With more than one worker, gunicorn's gevent worker sets its StreamServer's `max_accept` to 1, so each
worker accepts one connection per turn of its event loop (to spread a burst of connections over the
workers). When the workers are saturated a turn runs every ready request first, and the listen queue
drains at ~30 connections per second: 256 storefront connections opened at the start of a sale waited
up to 6 s for their first answer (measured; BENCHMARKS.md, "Issue 13, fourth pass"). This worker
accepts up to ACCEPT_BURST per turn, which still leaves the other worker its share of a burst.
"""

from __future__ import annotations

from typing import Any

from gevent.server import StreamServer
from gunicorn.workers import ggevent

ACCEPT_BURST = 16


class BurstAcceptServer(StreamServer):
    """A StreamServer whose `max_accept` is never set below ACCEPT_BURST (gevent's default otherwise)."""

    @property  # type: ignore[override]
    def max_accept(self) -> int:
        return self.__dict__.get("_burst_max_accept", StreamServer.max_accept)

    @max_accept.setter
    def max_accept(self, value: int) -> None:
        self.__dict__["_burst_max_accept"] = max(int(value), ACCEPT_BURST)


class GeventWorker(ggevent.GeventWorker):
    """gunicorn's gevent worker, serving through BurstAcceptServer."""

    def run(self) -> Any:
        # ggevent.run builds `StreamServer(...)` by its module-level name and then sets max_accept = 1;
        # this worker process runs nothing else that builds one.
        ggevent.StreamServer = BurstAcceptServer  # type: ignore[misc]
        return super().run()
