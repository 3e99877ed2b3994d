"""Group commit: the write transactions of a burst committed together, each still its own.

A burst of Slack commands is a burst of small write transactions. One at a time, each pays
for its own ``BEGIN`` and ``COMMIT`` (on PostgreSQL with fsync on, a flush of the WAL to disk)
and, on PostgreSQL, holds the rows it changed (the INC-number counter) until that commit.

Here the writers of one process still take turns in arrival order (the
:mod:`~incidentbot.writer_queue`), but on one connection with one transaction open: each writer's
unit of work runs in its own ``SAVEPOINT`` inside it. A writer that succeeds releases its
savepoint and waits; one that fails rolls back its savepoint only, and the others' work stays.
When nobody who can join is waiting (or the group is :data:`MAX_MEMBERS` strong, or older than
:data:`WINDOW_S`), the writer holding the turn commits the group once, and every member learns
that its work is stored only then: :func:`incidentbot.db.transaction` returns after the commit
that made it durable, never before, so "acknowledged means recorded" holds. If the commit
fails (or the connection breaks), every member of the group gets :class:`CommitFailed` and
nothing of any of them is stored. A process that dies mid-group has committed nothing of it.

What runs "after commit" in a member's session (the ledger's events, which wake the workers)
is held back until the group's commit (:func:`after_commit`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from incidentbot.writer_queue import WriterQueue

log = logging.getLogger(__name__)

# The execution option that marks the group's connection: it does not queue again (it holds
# the turn already) and starts its transaction with ``BEGIN IMMEDIATE`` on SQLite.
GROUP_OPTION = "incidentbot_group"
MAX_MEMBERS = 64
# A group older than this commits even while more writers wait, so the first member's answer
# never waits for a whole burst behind it.
WINDOW_S = 0.01
_AFTER_COMMIT = "incidentbot_after_group_commit"


class CommitFailed(Exception):
    """The group transaction this unit of work belonged to did not commit: none of it is
    stored (the cause is chained)."""


def after_commit(session: OrmSession, callback: Callable[[], None]) -> bool:
    """Call ``callback`` once ``session``'s work is really committed. True: ``session`` is a
    member of a group, and ``callback`` runs after the group's commit (never if it fails);
    False: ``session`` commits on its own, and its ``after_commit`` event is that moment."""
    pending: list[Callable[[], None]] | None = session.info.get(_AFTER_COMMIT)
    if pending is None:
        return False
    pending.append(callback)
    return True


class _Group:
    """One open transaction and the members whose savepoints it holds."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.members = 0
        self.after: list[Callable[[], None]] = []  # the members' after-commit callbacks
        self.opened = time.monotonic()
        self.done = threading.Event()
        self.error: BaseException | None = None


class GroupCommitter:
    """The group transactions of one engine (see the module docstring)."""

    def __init__(self, queue: WriterQueue) -> None:
        self.queue = queue
        self._group: _Group | None = None  # touched only by the thread holding the turn
        self._local = threading.local()

    def inside(self) -> bool:
        """Whether this thread is already running a member (a nested transaction goes alone)."""
        return bool(getattr(self._local, "active", False))

    @contextmanager
    def transaction(self, engine: Engine) -> Iterator[Session]:
        """A member's unit of work. Its turn is taken at its first statement, as a lone
        transaction takes SQLite's lock: a body that has not touched the database yet holds
        nobody up (and may wait for another writer)."""
        session = _Member(self, engine)
        joined: _Group | None = None
        try:
            with session:
                try:
                    yield session
                    session.commit()  # a member: releases its savepoint; alone: commits
                except BaseException as exc:
                    try:
                        session.rollback()  # a member: back to its own savepoint only
                    except BaseException:
                        if session.group is not None:
                            self._abort(exc)  # the connection is gone: so is the whole group
                    raise
            if session.group is not None:
                session.group.members += 1
                session.group.after.extend(session.pending)
                joined = session.group
        finally:
            if session.group is not None:
                self._local.active = False
                self._hand_over()
        if joined is None:
            return  # it never wrote, or went alone
        joined.done.wait()
        if joined.error is not None:
            raise CommitFailed(
                f"the transaction was not stored: its group commit failed ({_what(joined.error)})"
            ) from joined.error

    def take_turn(self, member: _Member, engine: Engine) -> Engine | Connection:
        """What ``member`` runs on: the open group's connection once its turn comes, or (a
        holder that never gave the turn back) the engine, alone, to the database's own lock."""
        if not self.queue.acquire(joins=self):
            return engine.execution_options(**{GROUP_OPTION: True})
        self._local.active = True
        try:
            if self._group is None:
                # Its transaction begins with the first member's first statement.
                conn = engine.connect().execution_options(**{GROUP_OPTION: True})
                try:
                    conn.begin()  # begun here, so a member's session joins it in a savepoint
                except BaseException:
                    conn.close()
                    raise
                self._group = _Group(conn)
        except BaseException:
            self._local.active = False
            self.queue.release()
            raise
        member.group = self._group
        member.info[_AFTER_COMMIT] = member.pending
        return self._group.conn

    def _hand_over(self) -> None:
        """At the end of a member's turn: commit the group unless another member is next and
        the group may still grow; then give the turn to the next writer."""
        callbacks: list[Callable[[], None]] = []
        try:
            group = self._group
            if group is None:
                return
            may_grow = group.members < MAX_MEMBERS and time.monotonic() - group.opened < WINDOW_S
            if self.queue.next_joins(self) and may_grow:
                return  # the next member joins this transaction
            self._group = None
            callbacks = self._finish(group)
        finally:
            self.queue.release()
        # Right after the commit, as a lone transaction's ``after_commit`` event would, and once
        # the turn is given back: a callback that writes (a ledger event's hook) takes its own
        # turn like any writer instead of waiting for the one this thread held.
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("a callback after a group commit failed")

    def _finish(self, group: _Group) -> list[Callable[[], None]]:
        """Commit (or roll back) the group and tell its members; the callbacks to run after
        the commit (none if it failed)."""
        callbacks: list[Callable[[], None]] = []
        try:
            if group.members:
                group.conn.commit()
            else:
                group.conn.rollback()  # every member failed: nothing to keep
        except BaseException as exc:
            group.error = exc
            log.error("a group commit of %d transactions failed: %s", group.members, _what(exc))
            try:
                group.conn.rollback()
            except Exception:
                group.conn.invalidate()
        else:
            callbacks = group.after
        finally:
            group.conn.close()
            group.done.set()
        return callbacks

    def _abort(self, cause: BaseException) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        group.error = cause
        try:
            group.conn.invalidate()
            group.conn.close()
        finally:
            group.done.set()


def _what(exc: BaseException) -> str:
    """The error without the statement and its parameters (what people typed, masked or not,
    stays out of logs and messages)."""
    orig = getattr(exc, "orig", None)
    return f"{type(exc).__name__}: {orig if orig is not None else exc}"


class _Member(Session):
    """A member's session: bound, at its first statement, to the group's connection (in a
    savepoint of its own) once its turn comes."""

    def __init__(self, committer: GroupCommitter, engine: Engine) -> None:
        super().__init__(expire_on_commit=False, join_transaction_mode="create_savepoint")
        self.group: _Group | None = None
        self.pending: list[Callable[[], None]] = []
        self._committer = committer
        self._engine = engine
        self._bound: Engine | Connection | None = None

    def get_bind(self, *args: Any, **kwargs: Any) -> Engine | Connection:
        if self._bound is None:
            self._bound = self._committer.take_turn(self, self._engine)
        return self._bound
