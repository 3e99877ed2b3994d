"""Standby channels: one public and one private channel made before any incident needs them.

A declare's channel is otherwise created, then its header posted, then pinned: three dependent
Slack round trips. With a standby channel the incident takes a channel that already exists and
renames it while the topic, purpose, invitations, header and announcement go out, so only the
pin waits for another round trip.

The pool is rows of ``standby_channel``; a row's ``state`` is its life:

- ``filling``: its channel is being created by a ledger run (``standby:<id>``);
- ``ready``: its channel exists, named ``incident-standby-<id>``, and no incident has it;
- ``taken``: an incident took it (``incident_id``) and has not renamed it yet;
- ``used``: renamed: it is that incident's channel now;
- ``discarded``: unusable (Slack refused the rename for another reason than the name, or its
  fill run failed): the incident that took it fell back to creating a channel.

At most one row of each kind (public, private) is ``filling`` or ``ready`` (a partial unique
index), so two replicas filling at once make one channel, not two. A take is one conditional
``UPDATE`` in the transaction that marks the channel step started (fenced by the step's lease):
of two concurrent declares one takes the channel, the other creates one as before, and a crash
cannot take a channel twice: a retried step finds the row its incident took and renames it.
The refill is queued in the commit that records the rename (or sets the spare aside), off the
declare's critical path: after a crash in between, by the resumed step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Column, Index, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from incidentbot.clock import utcnow
from incidentbot.db import UTCDateTime
from incidentbot.ledger import service as ledger
from incidentbot.ledger.models import SETTLED

FILLING, READY, TAKEN, USED, DISCARDED = "filling", "ready", "taken", "used", "discarded"
SPARE = (FILLING, READY)
RUN_KIND = "channel.standby"
FILL_ACTION = "chat.standby_fill"
NAME_PREFIX = "incident-standby-"
_SPARE_SQL = "state IN ('filling', 'ready')"


class StandbyChannel(SQLModel, table=True):
    __tablename__ = "standby_channel"
    __table_args__ = (
        # One spare of each kind, however many replicas fill at once.
        Index(
            "uq_standby_spare",
            "private",
            unique=True,
            sqlite_where=text(_SPARE_SQL),
            postgresql_where=text(_SPARE_SQL),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    private: bool = Field(sa_column=Column(Boolean, nullable=False))
    state: str = Field(max_length=16)
    channel_id: str | None = Field(default=None, max_length=64)
    channel_name: str | None = Field(default=None, max_length=80)
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


def standby_name(row_id: int, attempt: int = 1) -> str:
    return f"{NAME_PREFIX}{row_id}" + ("" if attempt == 1 else f"-{attempt}")


def held_by(session: Session, incident_id: int) -> StandbyChannel | None:
    """The channel an incident took and has not renamed yet (an interrupted attempt's)."""
    return session.exec(
        select(StandbyChannel).where(
            StandbyChannel.incident_id == incident_id, StandbyChannel.state == TAKEN
        )
    ).first()


def take(session: Session, incident_id: int, *, private: bool) -> tuple[int, str] | None:
    """Give the ready channel of the incident's kind to it: (row id, channel id), or None when
    there is none. One ``UPDATE ... RETURNING`` that matches only a row still ready: under
    PostgreSQL's row lock, the second of two concurrent takes finds it taken and gets None
    (the caller creates a channel). The refill is the caller's to queue (:func:`queue_fill`)."""
    oldest = (
        select(StandbyChannel.id)
        .where(StandbyChannel.state == READY, StandbyChannel.private == private)
        .order_by(col(StandbyChannel.id))
        .limit(1)
        .scalar_subquery()
    )
    got = session.execute(
        update(StandbyChannel)
        .where(col(StandbyChannel.id) == oldest, col(StandbyChannel.state) == READY)
        .values(state=TAKEN, incident_id=incident_id, updated_at=utcnow())
        .returning(col(StandbyChannel.id), col(StandbyChannel.channel_id))
    ).first()
    return (int(got[0]), str(got[1])) if got is not None else None


def settle(session: Session, row_id: int, state: str, **values: Any) -> None:
    """Move a row on (``used`` after its rename, ``discarded`` when it cannot be used)."""
    session.execute(
        update(StandbyChannel)
        .where(col(StandbyChannel.id) == row_id)
        .values(state=state, updated_at=utcnow(), **values)
    )


def queue_fill(session: Session, *, private: bool) -> int | None:
    """Add a spare of this kind and queue the run that creates its channel, unless one is
    there (ready or filling). Returns the new row's id. In a savepoint: losing the race to
    another replica's fill leaves the caller's transaction as it was."""
    spare = session.exec(
        select(StandbyChannel.id).where(
            StandbyChannel.private == private, col(StandbyChannel.state).in_(SPARE)
        )
    ).first()
    if spare is not None:
        return None
    now = utcnow()
    try:
        with session.begin_nested():  # the row and its run, or neither
            row = StandbyChannel(private=private, state=FILLING, created_at=now, updated_at=now)
            session.add(row)
            session.flush()
            assert row.id is not None
            ledger.start_run(
                session,
                kind=RUN_KIND,
                key=f"standby:{row.id}",
                steps=[
                    {
                        "name": f"Create the {'private' if private else 'public'} standby channel",
                        "action": FILL_ACTION,
                        "input": {"standby_id": row.id},
                        "idempotent": True,
                        "retry": {"max_attempts": 8, "backoff": 0.5, "max_backoff": 60.0},
                        "timeout": 30.0,
                    }
                ],
                actor="incidentbot",
            )
    except IntegrityError:
        return None  # another replica's spare, committed meanwhile
    return row.id


def ensure(session: Session) -> list[int]:
    """Queue a spare of each kind that lacks one; a spare whose fill run ended without a
    channel is discarded first, so a refusal once does not leave the pool empty for good."""
    filling = session.exec(
        select(StandbyChannel).where(
            StandbyChannel.state == FILLING, col(StandbyChannel.channel_id).is_(None)
        )
    ).all()
    for row in filling:
        run = ledger.get_by_key(session, f"standby:{row.id}")
        if run is None or run.status in SETTLED:
            settle(session, row.id, DISCARDED)  # type: ignore[arg-type]
    session.flush()
    queued = [queue_fill(session, private=p) for p in (False, True)]
    return [q for q in queued if q is not None]
