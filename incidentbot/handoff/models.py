"""Tables of on-call handoffs: the watch notes people leave for the next shift, and who
acknowledged which handoff. Neither belongs to an incident, so neither goes on a timeline."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from incidentbot.db import UTCDateTime


class HandoffNote(SQLModel, table=True):
    __tablename__ = "handoff_note"

    id: int | None = Field(default=None, primary_key=True)
    rotation: str = Field(max_length=64, index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    # The command that wrote it (a retried slash command finds its note).
    source_key: str = Field(max_length=200, unique=True)


class HandoffAck(SQLModel, table=True):
    """The incoming on-call acknowledged the handoff of ``rotation`` at ``handoff_at``."""

    __tablename__ = "handoff_ack"
    __table_args__ = (UniqueConstraint("rotation", "handoff_at", name="uq_handoff_ack_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    rotation: str = Field(max_length=64)
    handoff_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    acknowledged_by: str = Field(max_length=128)
    acknowledged_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class HandoffPost(SQLModel, table=True):
    """The handoff of ``rotation`` at ``handoff_at`` as posted in its channel: the first copy
    (the scheduled one, or a `/incident handoff` when it came first). The acknowledgement
    reminder goes out from here once."""

    __tablename__ = "handoff_post"
    __table_args__ = (UniqueConstraint("rotation", "handoff_at", name="uq_handoff_post_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    rotation: str = Field(max_length=64)
    handoff_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    channel_id: str = Field(max_length=64)
    # Empty while it is being posted (a crash in between is found by its block id).
    message_ts: str | None = Field(default=None, max_length=64)
    # The Slack users the incoming on-call were matched to (they may acknowledge).
    incoming: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    posted_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    reminded_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
