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
Slack's first retry of an event a minute later. Claims are forgotten after :data:`KEEP`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Column, Text, delete
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col

from incidentbot import db
from incidentbot.db import UTCDateTime, db_now

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
    """Claim ``key`` for this request (see the module docstring)."""
    key = key[:MAX_KEY]
    try:
        with db.transaction(engine) as s:
            now = db_now(s)
            row = s.get(InboundRequest, key, with_for_update=True)
            if row is None:
                s.add(InboundRequest(key=key, claimed_at=now))
                if next(_claims) % PRUNE_EVERY == 0:
                    s.execute(
                        delete(InboundRequest).where(col(InboundRequest.claimed_at) < now - KEEP)
                    )
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


def finish(engine: Engine, key: str, answer: Answer | None) -> None:
    """Store the answer the first request got (``None``: it failed; a replay gets an empty
    acknowledgement rather than running again)."""
    key = key[:MAX_KEY]
    with db.transaction(engine) as s:
        row = s.get(InboundRequest, key, with_for_update=True)
        if row is None:  # pruned meanwhile: nothing to replay
            return
        row.finished_at = db_now(s)
        if answer is not None and len(answer.body) <= MAX_STORED_BODY:
            row.status, row.content_type, row.body = answer.status, answer.content_type, answer.body
        s.add(row)
