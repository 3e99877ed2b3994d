"""SQLite's writers, one at a time, in the order they asked.

SQLite has one write lock per database file. Left to itself, a writer that finds it taken sleeps
and retries (the busy handler), so under a burst the order is luck, and a write can wait out
many later ones. Every write transaction of this process instead queues here first: the queue
hands the lock to waiters first come, first served, and the next waiter is woken when the holder
returns its connection, after its commit or rollback. Readers never queue (they run in deferred
transactions on WAL snapshots, see :func:`incidentbot.db.read`).

Slack times its answers (3 s), so a writer answering a Slack request
(:func:`incidentbot.priority.answering`) goes before the writers that can wait (the ledger
workers furnishing channels, alert ingest, stored answers), in the order they asked among
themselves. Only for a while: a writer that has waited :data:`PRIORITY_LIMIT_S` goes next
whoever waits behind it, so a steady stream of commands delays the others, never starves them.

Other processes on the same file still meet at SQLite's own lock and its busy handler; the
queue orders the writers of one process, which is where a burst of requests lands.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from incidentbot import priority

log = logging.getLogger(__name__)

# A holder that never gives the lock back (a leaked connection) must not stop every writer
# forever: after this long a waiter goes on to SQLite's own lock, as it did without the queue.
WAIT_LIMIT_S = 30.0
# A writer that can wait is passed over by writers answering Slack for at most this long.
PRIORITY_LIMIT_S = 2.0
_clock = time.monotonic


class WriterQueue:
    """A lock handed on in arrival order, answering writers first (see the module docstring);
    re-entrant for the thread that holds it.

    Re-entrant because a thread that opens a second connection while holding the first
    (nested transactions) must not wait for itself; that case meets SQLite's lock as before.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._mutex = threading.Lock()
        self._waiters: deque[_Turn] = deque()
        self._owner: int | None = None
        self._holds = 0
        self._promised: _Turn | None = None  # the next one, as next_joins() said

    def acquire(self, timeout: float = WAIT_LIMIT_S, *, joins: object | None = None) -> bool:
        """Wait for our turn; True when the lock is ours (release it once), False when the
        wait ran past ``timeout`` (the caller goes on without it and must not release).
        ``joins``: the group committer (:mod:`incidentbot.group_commit`) whose open transaction
        this writer can join, so a holder of that committer need not commit before handing over.
        Several engines of one process may write to one SQLite file and share this queue, each
        with its own committer: a writer joins only its own committer's group."""
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me or (self._owner is None and not self._waiters):
                self._owner = me
                self._holds += 1
                return True
            turn = _Turn(me, joins, urgent=priority.answering())
            self._waiters.append(turn)
        if turn.wait(timeout):
            return True  # release() made us the owner before setting the event
        with self._mutex:
            if turn.is_set():  # handed over between the timeout and taking the mutex
                return True
            self._waiters.remove(turn)
        log.warning("waited %.0f s in the %s write queue; going on to its lock", timeout, self.name)
        return False

    def release(self) -> None:
        with self._mutex:
            if self._holds == 0:
                raise RuntimeError(f"the {self.name} write queue is not held")
            self._holds -= 1
            if self._holds:
                return
            self._owner = None
            turn, self._promised = self._next(), None
            if turn is not None:
                self._waiters.remove(turn)
                self._owner = turn.thread_id
                self._holds = 1
                turn.set()

    def _next(self) -> _Turn | None:
        """Who goes next (the mutex held): the one next_joins() named, else the first writer
        answering Slack, unless the first in line has waited its limit, else the first."""
        if self._promised is not None and self._promised in self._waiters:
            return self._promised
        if not self._waiters:
            return None
        first = self._waiters[0]
        if first.urgent or _clock() - first.since >= PRIORITY_LIMIT_S:
            return first
        return next((t for t in self._waiters if t.urgent), first)

    def next_joins(self, group: object) -> bool:
        """Whether the next writer can join ``group``'s open transaction (False when nobody
        waits, or when the next one needs the database to itself or writes through another
        engine, whose connection would wait for this one's lock). The writer it looked at is
        the one :meth:`release` hands the turn to."""
        with self._mutex:
            self._promised = self._next()
            return self._promised is not None and self._promised.joins is group

    def waiting(self) -> int:
        """How many writers are queued behind the holder."""
        with self._mutex:
            return len(self._waiters)


class _Turn(threading.Event):
    """A queued writer: set when the lock has been handed to its thread."""

    def __init__(self, thread_id: int, joins: object | None = None, *, urgent: bool = False):
        super().__init__()
        self.thread_id = thread_id
        self.joins = joins
        self.urgent = urgent
        self.since = _clock()


_queues: dict[str, WriterQueue] = {}
_queues_lock = threading.Lock()


def for_database(key: str) -> WriterQueue:
    """The one queue of this process for the database ``key`` (a file path or URL)."""
    with _queues_lock:
        queue = _queues.get(key)
        if queue is None:
            queue = _queues[key] = WriterQueue(key)
        return queue
