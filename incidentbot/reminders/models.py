"""The state of reminders, so a restart forgets nothing: when one was last sent, its message,
and who snoozed or dismissed it until when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from incidentbot.db import UTCDateTime

STATUS_UPDATE = "status_update"
STALE = "stale"
POSTMORTEM = "postmortem"
ACTION_ITEMS = "action_items"  # subject: the owner's user id, or the digest channel
KINDS = (STATUS_UPDATE, STALE, POSTMORTEM, ACTION_ITEMS)


def _ts() -> datetime | None:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))  # type: ignore[no-any-return]


class Reminder(SQLModel, table=True):
    """One reminder per kind and subject (an incident's id; for the weekly action item digest,
    an owner or the digest channel).

    ``basis`` is what the reminder counts from (for status updates: the last update, or the
    declaration); when it moves (an update was posted) the reminder starts over, and snoozes
    and dismissals made for the old basis no longer apply."""

    __tablename__ = "reminder"
    __table_args__ = (UniqueConstraint("kind", "subject", name="uq_reminder_subject"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    subject: str = Field(max_length=128)
    basis: datetime | None = _ts()
    sent_count: int = 0
    last_sent_at: datetime | None = _ts()
    channel_id: str | None = Field(default=None, max_length=64)
    message_ts: str | None = Field(default=None, max_length=64)
    snoozed_until: datetime | None = _ts()
    snoozed_by: str | None = Field(default=None, max_length=128)
    dismissed_at: datetime | None = _ts()
    dismissed_by: str | None = Field(default=None, max_length=128)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
