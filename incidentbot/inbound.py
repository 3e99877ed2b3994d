"""Requests from outside, each run once: a replay or a retry gets the first answer again.

Slack resends what it thinks was lost (events with ``X-Slack-Retry-Num``, the same command or
click), and anyone who captured a signed request can send its bytes again within the five
minutes its signature stays valid. Each request that carries an identity of its own (an event
id, a command's or click's trigger id, or else its signature) is *claimed* by that key in the
database before it runs, so every replica sees the claim: the first claim runs, a later one
gets the stored answer (or an empty acknowledgement while the first is still running), and
nothing runs twice.

A claim whose request never finished (its process died mid-way) may be taken over after
:data:`TAKEOVER` seconds: long after Slack stopped waiting for that answer, soon enough for
Slack's first retry of an event a minute later. Claims are forgotten after :data:`KEEP`. The
answers are stored by :mod:`incidentbot.inbound_answers`.

A request whose only effect is one transaction (a declare: it writes before anything calls
Slack) is claimed *in* that transaction instead (:func:`deferred`,
:func:`claimed_transaction`): the claim and what the request changed commit together or not at
all, so a crash between them can neither lose the request (a claim without its incident) nor
run it twice (an incident without its claim); and the request costs one statement, not a
transaction of its own. A request refused in that transaction is rolled back with its claim:
no answer is stored for it, and a retry runs it again. Such a claim is written finished (it
commits only with the work): if the process dies between the commit and the answer, a retry
gets an empty acknowledgement, and is never taken over and run twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal

from sqlalchemy import Column, Text, bindparam, delete, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

from incidentbot import db
from incidentbot.db import UTCDateTime, db_now
from incidentbot.errors import DomainError

TAKEOVER = timedelta(seconds=60)
KEEP = timedelta(minutes=10)  # longer than the 5 minutes a Slack signature is accepted
PRUNE_EVERY = 64  # claims; pruning is a cheap indexed delete, not worth doing on each one
MAX_KEY = 200
MAX_STORED_BODY = 16 * 1024  # answers are small; a larger one is not replayed, only acked

_claims = itertools.count(1)


class InboundRequest(SQLModel, table=True):
    """One claimed request and, once it finished, the answer it got."""

    __tablename__ = "inbound_request"
    key: str = Field(primary_key=True, max_length=MAX_KEY)
    claimed_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    status: int | None = None
    content_type: str | None = Field(default=None, max_length=100)
    body: str | None = Field(default=None, sa_column=Column(Text))


TABLE = InboundRequest.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: str


@dataclass(frozen=True)
class Claim:
    """``run``: this request is the first (run it, then :func:`finish`). ``answered``: it ran
    before, here is its answer. ``running``: it is running elsewhere right now."""

    outcome: Literal["run", "answered", "running"]
    answer: Answer | None = None


def claim(engine: Engine, key: str) -> Claim:
    """Claim ``key`` for this request (see the module docstring). The first claim is one
    ``INSERT ... ON CONFLICT DO NOTHING``; only a key seen before is read."""
    key = key[:MAX_KEY]
    if engine.dialect.name == "postgresql" and _claim_new(engine, key):
        return Claim("run")
    try:
        with db.transaction(engine) as s:
            now = db_now(s)
            conn = s.connection()
            new = pg_insert(TABLE) if conn.dialect.name == "postgresql" else sqlite_insert(TABLE)
            stmt = new.values(key=key, claimed_at=now).on_conflict_do_nothing(
                index_elements=["key"]
            )
            if conn.execute(stmt.returning(TABLE.c.key)).first() is not None:
                if next(_claims) % PRUNE_EVERY == 0:
                    conn.execute(delete(TABLE).where(TABLE.c.claimed_at < now - KEEP))
                return Claim("run")
            row = s.get(InboundRequest, key, with_for_update=True)
            if row is None:  # pruned between the two statements: it is long gone
                s.add(InboundRequest(key=key, claimed_at=now))
                return Claim("run")
            if row.finished_at is not None:
                if row.status is None:
                    return Claim("answered", Answer(200, None, ""))
                return Claim("answered", Answer(row.status, row.content_type, row.body or ""))
            if now - row.claimed_at < TAKEOVER:
                return Claim("running")
            row.claimed_at = now  # the first one's process died before answering
            s.add(row)
            return Claim("run")
    except IntegrityError:  # another replica claimed it between our read and our insert
        return Claim("running")


@dataclass
class Deferred:
    """A request to be claimed in the transaction that does its work (:func:`claim_here`).
    ``claimed``: its claim went into that transaction, which committed; ``taken``: the key was
    claimed before (a replay, a retry), and the transaction was abandoned; ``undone``: its
    claim was written, but the transaction did not commit (the request was refused or failed
    in it), so nothing of it is stored and a retry runs it again."""

    key: str
    claimed: bool = False
    taken: bool = False
    undone: bool = False


class Taken(DomainError):
    """The request's key was claimed before: its transaction stops here, unchanged."""


_deferred: ContextVar[Deferred | None] = ContextVar("inbound_deferred", default=None)


@contextmanager
def deferred(key: str) -> Iterator[Deferred]:
    """While this request runs, its claim waits for the transaction that does its work. The
    door checks ``undone``, ``claimed`` and ``taken`` afterwards: none of them means the
    request never reached that transaction (a refusal before it, a form opened), and the door
    claims the key the usual way."""
    holder = Deferred(key[:MAX_KEY])
    token = _deferred.set(holder)
    try:
        yield holder
    finally:
        _deferred.reset(token)


@cache
def _insert_claim(dialect: str) -> Any:
    if dialect == "postgresql":
        now: Any = func.statement_timestamp()
        new: Any = pg_insert(TABLE)
    else:  # 'now' fixed for the statement, in the format datetimes are stored in
        now, new = func.strftime("%Y-%m-%d %H:%M:%f000", "now"), sqlite_insert(TABLE)
    return (
        new.values(key=bindparam("key"), claimed_at=now, finished_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(TABLE.c.key)
    )


def claim_here(session: Session) -> None:
    """Claim the deferred request being answered (if any) in ``session``'s transaction: one
    ``INSERT ... ON CONFLICT DO NOTHING``, first, so a racing retry waits here rather than
    after the work. Raises :class:`Taken` when the key was claimed before.

    The claim is written finished (its answer not stored yet): it commits only with the work,
    so once it is visible the request has run. A replay before the answer is stored gets an
    empty acknowledgement, and one after a crash between the commit and the answer is never
    taken over (:data:`TAKEOVER`) and run a second time."""
    holder = _deferred.get()
    if holder is None or holder.claimed:
        return
    conn = session.connection()
    if conn.execute(_insert_claim(conn.dialect.name), {"key": holder.key}).first() is None:
        holder.taken = True
        raise Taken("this request was already received")
    holder.claimed = True
    if next(_claims) % PRUNE_EVERY == 0:
        conn.execute(delete(TABLE).where(TABLE.c.claimed_at < db_now(session) - KEEP))


_PENDING = "inbound_pending_claim"


@contextmanager
def claimed_transaction(engine: Engine, *, by_caller: bool = False) -> Iterator[Session]:
    """:func:`db.transaction` with the deferred request being answered (if any) claimed in it:
    first (:func:`claim_here`), or on PostgreSQL in the transaction's first statement: with
    ``by_caller`` the caller's own (:func:`claim_key`), else the first read of the incident the
    request changes (:func:`pending_claim`); if neither claims it, at the end. If the
    transaction does not commit (a refusal in it, a failure, its group's commit failing), its
    claim, if written, went with it: the request is marked ``undone``, not ``claimed``, and the
    door stores no answer for it, so a retry is run again rather than answered with what the
    first attempt was told."""
    holder = _deferred.get()
    if holder is not None and holder.claimed:  # a later transaction of a claimed request
        holder = None
    try:
        with db.transaction(engine) as session:
            if holder is not None and engine.dialect.name != "postgresql":
                claim_here(session)
            elif holder is not None and not by_caller:
                session.info[_PENDING] = holder.key  # for the first statement (pending_claim)
            yield session
            if holder is not None:
                session.info.pop(_PENDING, None)
                claim_here(session)  # unless the caller's statement claimed it (claim_key)
    except BaseException:
        if holder is not None and not holder.taken:  # reached its transaction, then undone
            holder.claimed, holder.undone = False, True
        raise


def claim_key(session: Session) -> str | None:
    """On PostgreSQL, in a :func:`claimed_transaction`: the key of the request being answered,
    not claimed yet, for the caller to claim in its own first statement (one round trip for the
    claim and the work), then report with :func:`claimed_by_caller`. None: nothing to claim
    (no request, or claimed already, as on SQLite)."""
    holder = _deferred.get()
    if holder is None or holder.claimed or session.get_bind().dialect.name != "postgresql":
        return None
    return holder.key


def pending_claim(session: Session) -> str | None:
    """On PostgreSQL, in a :func:`claimed_transaction` that has run no statement yet: the key of
    the request, for the statement about to run to claim with :func:`claim_cte`, then report
    with :func:`claimed_by_caller` (no round trip of its own, still the first write). Given
    once: None after, and when there is nothing to claim."""
    key = session.info.pop(_PENDING, None)
    holder = _deferred.get()
    if key is None or holder is None or holder.claimed or holder.key != key:
        return None
    return key


@cache
def claim_cte() -> Any:
    """The claim of :func:`pending_claim` as a data-modifying ``WITH`` clause (PostgreSQL), its
    key the parameter ``inbound_key``: one row if the claim is new, none if the key was
    claimed before. Written finished, as :func:`claim_here` writes it."""
    now = func.statement_timestamp()
    return (
        pg_insert(TABLE)
        .values(key=bindparam("inbound_key"), claimed_at=now, finished_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(TABLE.c.key)
        .cte("inbound_claim")
    )


def claimed_by_caller(session: Session, new: bool) -> None:
    """The claim of :func:`claim_key` or :func:`pending_claim` was written (``new``), or found
    taken: then the request is a replay or a retry, and :class:`Taken` is raised."""
    holder = _deferred.get()
    assert holder is not None and not holder.claimed
    if not new:
        holder.taken = True
        raise Taken("this request was already received")
    holder.claimed = True
    if next(_claims) % PRUNE_EVERY == 0:
        conn = session.connection()
        conn.execute(delete(TABLE).where(TABLE.c.claimed_at < db_now(session) - KEEP))


def _claim_new(engine: Engine, key: str) -> bool:
    """PostgreSQL: claim a key never seen in one statement and one round trip (autocommit, the
    server's clock). False: the key is taken (a replay, a retry): the caller reads it. A racing
    insert of the same key waits for the other to commit or roll back, then conflicts or
    goes on."""
    new = (
        pg_insert(TABLE)
        .values(key=key, claimed_at=func.clock_timestamp())
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(TABLE.c.key)
    )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if conn.execute(new).first() is None:
            return False
        if next(_claims) % PRUNE_EVERY == 0:
            conn.execute(delete(TABLE).where(TABLE.c.claimed_at < func.clock_timestamp() - KEEP))
    return True
