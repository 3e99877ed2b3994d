"""The scheduler's leadership: one leader across replicas (see :mod:`incidentbot.scheduler.core`).

On PostgreSQL the leader holds the session-level advisory lock ``pg_try_advisory_lock(LOCK_KEY)``
on a dedicated connection kept open, through which every read and write of the leader goes: a
leader that lost it cannot claim anything. On SQLite (one process) the lock is trivial. A part of
:class:`incidentbot.scheduler.core.Scheduler`, which provides its state and the settling of the
runs a dead leader left.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool
from sqlmodel import create_engine

from incidentbot import db

log = logging.getLogger("incidentbot.scheduler")

# pg_try_advisory_lock key of the scheduler leader ("incidentbot-scheduler" as an int64).
LOCK_KEY = 0x1B5C_4ED0_0001


class Leadership:
    """Leading, and the leader's connection, of :class:`~incidentbot.scheduler.core.Scheduler`."""

    # Provided by Scheduler.
    engine: Engine
    name: str
    lock_key: int
    _postgres: bool
    _lock_engine: Engine | None
    _conn: Connection | None
    _leader: bool
    _settled: bool
    _cursor: dict[str, Any]
    _settle_interrupted: Any

    @property
    def is_leader(self) -> bool:
        return self._leader

    def try_lead(self, *, settle: bool = True) -> bool:
        """Become the leader if nobody else is; once leading, settle the runs a dead leader
        left (once per leadership: it may run a job again; ``settle=False`` leaves it to the
        next call)."""
        if not self._leader and not self._lead():
            return False
        if settle and not self._settled:
            self._settle_interrupted()
            self._settled = True
        return True

    def _lead(self) -> bool:
        """Take the leader's lock if nobody holds it (PostgreSQL; on SQLite it is trivial)."""
        if self._postgres:
            try:
                conn = self._connection()
                got = bool(
                    conn.execute(
                        text("SELECT pg_try_advisory_lock(:k)"), {"k": self.lock_key}
                    ).scalar_one()
                )
            except DBAPIError as exc:
                log.warning("scheduler %s: cannot reach the database: %s", self.name, exc.orig)
                self._drop_connection()
                return False
            if not got:
                return False
        self._leader, self._settled = True, False
        self._cursor = {}
        log.info("scheduler %s is the leader", self.name)
        return True

    def _connection(self) -> Connection:
        if self._conn is None:
            if self._lock_engine is None:
                # Its own engine without a pool: closing the connection really closes it, so a
                # session holding the lock is never handed back to a pool.
                self._lock_engine = create_engine(
                    self.engine.url.render_as_string(hide_password=False), poolclass=NullPool
                )
            conn = self._lock_engine.connect()
            self._conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with suppress(Exception):  # it is broken already
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    def _lose(self, why: object) -> None:
        if self._leader:
            log.warning("scheduler %s is no longer the leader: %s", self.name, why)
        self._leader = False
        self._drop_connection()

    def release(self) -> None:
        """Give up leadership and close the lock connection."""
        if self._postgres and self._conn is not None and self._leader:
            with suppress(DBAPIError):
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.lock_key})
        self._leader = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_engine is not None:
            self._lock_engine.dispose()
            self._lock_engine = None

    @contextmanager
    def _db(self) -> Iterator[Connection]:
        """The leader's connection (PostgreSQL: the one holding the lock), autocommitting."""
        if self._postgres:
            yield self._connection()
        else:
            with self.engine.begin() as conn:
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """:meth:`_db` for reads: on SQLite a read snapshot, which takes no write turn."""
        if self._postgres:
            yield self._connection()
        else:
            with db.read(self.engine) as session:
                yield session.connection()
