"""Tables of on-call handoffs: the watch notes people leave for the next shift, and who
acknowledged which handoff. Neither belongs to an incident, so neither goes on a timeline."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
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
