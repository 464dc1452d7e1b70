"""The beat scheduler: celery-redbeat's, made to outlive Redis stalls, failovers, flushes and a lost lock.

celery-redbeat 2.4 lets any Redis error in `tick()` escape, and `celery beat` exits on it (a stall of a
few seconds is enough: the lock extension times out). It takes its lock once, at start-up, so a lock
lost to a flush or an expiry is never taken again (`LockNotOwnedError`, exit), and it writes the static
schedule only at start-up, so a flushed Redis leaves beat with nothing to send. This subclass:

* treats a Redis or broker error in a tick as transient: logs it and tries again a second later;
* on losing the lock sends nothing more and takes the lock again only when it is free (SET NX, as a
  standby beat does), so two beats never send at the same time;
* writes the static schedule entries again whenever Redis no longer has them.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.exceptions import OperationalError
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis
from redis.exceptions import LockNotOwnedError, RedisError
from redis.lock import Lock

logger = logging.getLogger("celery.beat")

# Redis gone, stalled, failing over (READONLY, LOADING, MASTERDOWN are RedisErrors too), broker unreachable.
TRANSIENT = (RedisError, OperationalError, OSError)
RETRY_SECONDS = 1.0


class ResilientScheduler(RedBeatScheduler):
    """RedBeatScheduler whose tick never ends beat on a Redis error, a flush or a lost lock."""

    def setup_schedule(self) -> None:
        """Write the static schedule; if Redis is not there yet, the first tick that reaches it does."""
        if str(self.app.conf.redbeat_redis_url).startswith(("redis+cluster", "rediss+cluster")):
            raise ValueError("beat keeps its schedule on one Redis: with REDIS_URL naming a cluster, "
                             "CELERY_BROKER_URL must be a redis:// URL (sync/app.py redbeat_url)")
        try:
            super().setup_schedule()
        except TRANSIENT as error:
            logger.warning("beat: cannot write the schedule to Redis yet (%s); the next tick retries", error)

    def tick(self, min: Any = min, **kwargs: Any) -> float:
        """One round: hold the lock (or stand by), restore lost entries, send what is due."""
        try:
            if not self._holds_lock():
                return self.max_interval
            if self.lock is not None:
                self.lock.extend(int(self.lock_timeout))  # only the owner writes entries (redbeat extends again)
            self._restore_static_entries()
            return super().tick(min=min, **kwargs)
        except LockNotOwnedError:
            logger.warning("beat: Lost lock %s; sending nothing until this beat holds it again", self.lock_key)
            self.lock = None
            return 0.0  # try to take it again at once: if it is free, no round is skipped
        except TRANSIENT as error:
            logger.warning("beat: Redis unavailable (%s: %s); retrying in %.0f s",
                           type(error).__name__, error, RETRY_SECONDS)
            return RETRY_SECONDS

    def close(self) -> None:
        """Release the lock if Redis answers; otherwise it expires by itself after lock_timeout."""
        try:
            super().close()
        except TRANSIENT as error:
            logger.warning("beat: could not release the lock (%s); it expires within %ss", error, self.lock_timeout)

    def _holds_lock(self) -> bool:
        """True if this beat holds the lock or has just taken it (it was free); False on standby."""
        if not self.lock_key or self.lock is not None:
            return True  # held, as far as we know: extending it raises LockNotOwnedError if it was lost
        lock = self._new_lock()
        if not lock.acquire(blocking=False):
            return False
        logger.info("beat: Acquired lock")
        self.lock = lock
        return True

    def _new_lock(self) -> Lock:
        """A lock built as redbeat builds it at start-up (its extend script sets, not adds, the TTL)."""
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        return lock

    def _restore_static_entries(self) -> None:
        """Write the configured entries again if Redis lost any of them (flush, failover, old snapshot)."""
        conf = self.app.redbeat_conf
        names = list(conf.schedule)
        if not names:
            return
        client = get_redis(self.app)
        with client.pipeline(transaction=False) as pipe:
            pipe.zmscore(conf.schedule_key, [self.Entry.generate_key(self.app, name) for name in names])
            pipe.exists(conf.statics_key)
            scores, statics = pipe.execute()
        missing = [name for name, score in zip(names, scores) if score is None]
        if missing or not statics:
            logger.warning("beat: Redis lost %d schedule entries (%s); writing them again",
                           len(missing), ", ".join(missing) or "index")
            super().setup_schedule()
