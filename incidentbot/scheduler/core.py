"""The scheduler: one leader across replicas, and each (job, slot) fired once.

- **Timing** comes from APScheduler triggers (:mod:`incidentbot.scheduler.jobs`). The scheduler
  loop asks each job for its slots and sleeps until the earliest one; tests call
  :meth:`Scheduler.tick` with a fake clock instead.
- **Leadership** (:mod:`incidentbot.scheduler.leadership`). On PostgreSQL the leader holds the
  session-level advisory lock ``pg_try_advisory_lock(LOCK_KEY)`` on a dedicated connection kept
  open; standbys retry every ``retry`` seconds. When the leader dies its connection drops and the
  lock is freed. Every read and write of the leader goes through that same connection, so a
  leader that lost it cannot claim anything. On SQLite (one process) the lock is trivial.
- **Claims.** A firing first inserts its ``scheduler_run`` row (unique job, slot); a unique
  violation means the slot is already claimed and it is skipped.
- **Catch-up.** Slots since the job's last recorded slot (or since ``now - grace``) that are still
  within grace run once each, in order; older ones are recorded ``skipped``.
- **Start-up.** :meth:`Scheduler.prepare` (``serve`` runs it beside its warm-up, before ready)
  leads (opens the lock connection) and reads where every job's slots stand: the first tick
  only settles what a dead leader left, if anything, and fires what is due. On SQLite reads
  take no write turn (:func:`incidentbot.db.read`).
- **Slack first.** A tick claims a slot once no Slack answer of this process is in progress
  (:func:`incidentbot.priority.after_urgent`, waiting :data:`YIELD_TO_SLACK_S` at most).
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from incidentbot import clock, priority
from incidentbot.ledger.redact import redact_text
from incidentbot.scheduler.jobs import DEFAULT_GRACE as DEFAULT_GRACE
from incidentbot.scheduler.jobs import EPOCH as EPOCH
from incidentbot.scheduler.jobs import Job as Job
from incidentbot.scheduler.jobs import SchedulerError as SchedulerError
from incidentbot.scheduler.jobs import make_trigger as make_trigger
from incidentbot.scheduler.jobs import resolve_jobs as resolve_jobs
from incidentbot.scheduler.leadership import LOCK_KEY, Leadership
from incidentbot.scheduler.models import FAILED, OK, SKIPPED, SchedulerRun
from incidentbot.scheduler.registry import JobContext

log = logging.getLogger("incidentbot.scheduler")

# Slots further back than this are not even looked at (a long outage of a per-second job).
SKIP_HORIZON = timedelta(days=1)
# At most this many missed slots of one job are recorded as skipped at once (the newest).
MAX_SKIPPED = 1000
# While this process answers Slack (3 s to answer), a slot's claim waits this long at most.
YIELD_TO_SLACK_S = 1.0

T = SchedulerRun.__table__  # type: ignore[attr-defined]


def _default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Scheduler(Leadership):
    """Runs ``jobs`` on one replica at a time. ``start()`` runs the loop in a thread."""

    def __init__(
        self,
        engine: Engine,
        jobs: list[Job],
        *,
        name: str | None = None,
        now: Callable[[], datetime] | None = None,
        retry: float = 1.0,
        lock_key: int = LOCK_KEY,
    ):
        self.engine = engine
        self.jobs = {job.name: job for job in jobs}
        self.name = name or _default_name()
        self._now = now or clock.utcnow
        self.retry = retry
        self.lock_key = lock_key
        self._postgres = engine.dialect.name == "postgresql"
        self._lock_engine: Engine | None = None
        self._conn: Connection | None = None
        self._leader = False
        self._settled = False  # the runs a dead leader left, settled since this one leads
        self._cursor: dict[str, datetime | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- start-up -------------------------------------------------------------------------------

    def prepare(self) -> bool:
        """The first tick's setup, before the bot says it is ready (see the module): lead if
        nobody does, read each job's last slot and whether a dead leader left runs unfinished
        (the first tick settles them: that may run a job). Returns whether this scheduler
        leads; a database error is logged and left to the loop."""
        try:
            if self.try_lead(settle=False):
                self._load_cursors()
                if not self._settled and not self._interrupted():
                    self._settled = True  # nothing for the first tick to settle
        except DBAPIError as exc:
            self._lose(exc.orig)
        return self._leader

    # -- rows ---------------------------------------------------------------------------------

    def _claim(self, job: str, slot: datetime, *, outcome: str | None = None,
               error: str | None = None) -> int | None:  # fmt: skip
        priority.after_urgent(YIELD_TO_SLACK_S)  # a Slack answer in progress goes first
        now = self._now()
        values: dict[str, Any] = {"job": job, "slot": slot, "claimed_by": self.name}
        if outcome is None:
            values["started_at"] = now
        else:
            values.update(finished_at=now, outcome=outcome, error=error)
        try:
            with self._db() as conn:
                return int(conn.execute(insert(T).values(**values).returning(T.c.id)).scalar_one())
        except IntegrityError:
            return None  # someone else claimed this slot

    def _finish(self, row_id: int, outcome: str, error: str | None) -> None:
        with self._db() as conn:
            conn.execute(
                update(T)
                .where(T.c.id == row_id, T.c.claimed_by == self.name, T.c.outcome.is_(None))
                .values(finished_at=self._now(), outcome=outcome, error=error)
            )

    def _load_cursors(self) -> None:
        """Each runnable job's last recorded slot (None: never recorded), for every job not
        read yet, in one read."""
        missing = [n for n, j in self.jobs.items() if j.runnable and n not in self._cursor]
        if not missing:
            return
        with self._read() as conn:
            last = dict(
                conn.execute(  # UTCDateTime: aware UTC
                    select(T.c.job, func.max(T.c.slot))
                    .where(T.c.job.in_(missing))
                    .group_by(T.c.job)
                ).all()
            )
        for name in missing:
            self._cursor[name] = last.get(name)

    def _interrupted(self) -> list[Any]:
        """Runs another scheduler claimed and never finished (it died)."""
        with self._read() as conn:
            return list(
                conn.execute(
                    select(T.c.id, T.c.job, T.c.slot, T.c.claimed_by)
                    .where(T.c.outcome.is_(None), T.c.claimed_by != self.name)
                    .order_by(T.c.slot)
                ).all()
            )

    def _settle_interrupted(self, rows: list[Any] | None = None) -> None:
        """Runs another scheduler claimed and never finished (it died): redo or mark failed."""
        now = self._now()
        rows = self._interrupted() if rows is None else rows
        for row_id, name, slot, owner in rows:
            job = self.jobs.get(name)
            if (
                job is not None
                and job.runnable
                and job.idempotent
                and ((now - slot).total_seconds() <= job.grace)
            ):
                with self._db() as conn:
                    taken = conn.execute(
                        update(T)
                        .where(T.c.id == row_id, T.c.claimed_by == owner, T.c.outcome.is_(None))
                        .values(claimed_by=self.name, started_at=now)
                    ).rowcount
                if taken:
                    log.info("job %s slot %s: rerunning (scheduler %s stopped during it)",
                             name, slot.isoformat(), owner)  # fmt: skip
                    self._run(job, row_id, slot, attempt=2)
                continue
            error = (
                f"interrupted: scheduler {owner} stopped before this run finished; "
                "it may or may not have happened"
            )
            with self._db() as conn:
                conn.execute(
                    update(T)
                    .where(T.c.id == row_id, T.c.claimed_by == owner, T.c.outcome.is_(None))
                    .values(finished_at=now, outcome=FAILED, error=error)
                )
            log.warning("job %s slot %s: %s", name, slot.isoformat(), error)

    # -- running ------------------------------------------------------------------------------

    def _run(self, job: Job, row_id: int, slot: datetime, attempt: int = 1) -> str:
        assert job.fn is not None
        ctx = JobContext(job.name, slot, self.name, self.engine, attempt, job.grace)
        try:
            job.fn(ctx)
            outcome, error = OK, None
        except Exception as exc:  # a job's failure is recorded, not fatal
            outcome, error = FAILED, redact_text(f"{type(exc).__name__}: {exc}")[:2000]
            log.warning("job %s slot %s failed: %s", job.name, slot.isoformat(), error)
        self._finish(row_id, outcome, error)
        return outcome

    def tick(self) -> int:
        """Fire every due slot once (claiming it first); return how many runs this made."""
        if not self._leader:
            return 0
        if self._postgres:  # notice a lost lock connection even when nothing is due
            with self._db() as conn:
                conn.execute(text("SELECT 1"))
        if not self._settled:  # leading since prepare(): what a dead leader left, first
            self.try_lead()
        runs = 0
        for job in self.jobs.values():
            if job.runnable and not self._stop.is_set():
                runs += self._tick_job(job)
        return runs

    def _tick_job(self, job: Job) -> int:
        now = self._now()
        horizon = now - timedelta(seconds=job.grace)
        if job.name not in self._cursor:
            self._load_cursors()
        cursor = self._cursor[job.name]
        if cursor is None:
            start = horizon
        else:
            start = max(cursor + timedelta(microseconds=1), horizon - SKIP_HORIZON)
        missed: collections.deque[datetime] = collections.deque(maxlen=MAX_SKIPPED)
        runs = 0
        for slot in job.slots(start, now):
            if self._stop.is_set():
                break
            if slot < horizon:
                missed.append(slot)
            else:
                self._skip(job, missed)
                row_id = self._claim(job.name, slot)
                if row_id is not None:
                    self._run(job, row_id, slot)
                    runs += 1
            self._cursor[job.name] = slot
        self._skip(job, missed)
        return runs

    def _skip(self, job: Job, missed: collections.deque[datetime]) -> None:
        if missed:
            log.warning("job %s: %d slot(s) missed beyond grace (%gs), recorded skipped",
                        job.name, len(missed), job.grace)  # fmt: skip
        error = f"missed: no scheduler ran it within {job.grace:g}s of its slot"
        while missed:
            self._claim(job.name, missed.popleft(), outcome=SKIPPED, error=error)

    def next_due(self) -> datetime | None:
        """The earliest slot not handled yet, over all jobs."""
        best = None
        now = self._now()
        for job in self.jobs.values():
            if not job.runnable:
                continue
            cursor = self._cursor.get(job.name)
            nxt = job.next_slot(cursor) if cursor is not None else job.first_slot_from(now)
            if nxt is not None and (best is None or nxt < best):
                best = nxt
        return best

    # -- the loop -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("scheduler already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"scheduler-{self.name}",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop after the job under way (if any), release the lock; False if it did not stop."""
        self._stop.set()
        clean = True
        if self._thread is not None:
            self._thread.join(timeout)
            clean = not self._thread.is_alive()
            self._thread = None
        if clean:
            self.release()
        return clean

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.try_lead():
                    self._stop.wait(self.retry)
                    continue
                self.tick()
            except DBAPIError as exc:
                self._lose(exc.orig)
                self._stop.wait(self.retry)
                continue
            nxt = self.next_due()
            wait = self.retry
            if nxt is not None:
                wait = min(wait, max((nxt - self._now()).total_seconds(), 0.0))
            self._stop.wait(max(wait, 0.005))
