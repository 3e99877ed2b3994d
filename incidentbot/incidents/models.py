"""Tables of the incident domain: incidents, role assignments, timeline events, action items."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Date, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from incidentbot.db import UTCDateTime

MILESTONES = (
    "impact_started",
    "detected",
    "declared",
    "acknowledged",
    "mitigated",
    "resolved",
    "closed",
)
# Milestones a person may set by hand, to any time not in the future. The others follow from
# the lifecycle (declare, status changes, resolve, close) or from paging acknowledgements.
SETTABLE_MILESTONES = ("impact_started", "detected", "acknowledged", "mitigated")


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class Counter(SQLModel, table=True):
    """Gap-free sequences (INC-n): incremented in the transaction that uses the number."""

    __tablename__ = "counter"
    name: str = Field(primary_key=True, max_length=64)
    value: int = 0


class Incident(SQLModel, table=True):
    __tablename__ = "incident"
    __table_args__ = (
        UniqueConstraint("number", name="uq_incident_number"),
        # A page of incidents in some statuses, newest first, with the columns a list line
        # shows: read off the index alone (listing.list_page).
        Index("ix_incident_list", "status", "number", "severity", "title", "channel_id", "private"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: int
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, sa_column=Column(Text))
    severity: str = Field(max_length=16)
    status: str = Field(max_length=32, index=True)
    fields: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    commander: str | None = Field(default=None, max_length=128)
    declared_by: str = Field(max_length=128)
    idempotency_key: str | None = Field(default=None, max_length=200, unique=True)
    resolution_summary: str | None = Field(default=None, sa_column=Column(Text))
    # True: a private incident (a private channel, out of the digest and public reports).
    # Public ones hold NULL, so a downgrade dropping the column loses data only if some are.
    private: bool | None = Field(default=None, sa_column=Column(Boolean, nullable=True))

    channel_id: str | None = Field(default=None, max_length=64, index=True)
    channel_name: str | None = Field(default=None, max_length=80)
    # The chat messages kept up to date for this incident (platform message ids).
    header_ts: str | None = Field(default=None, max_length=64)
    digest_ts: str | None = Field(default=None, max_length=64)

    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    impact_started_at: datetime | None = _ts()
    detected_at: datetime | None = _ts()
    declared_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    acknowledged_at: datetime | None = _ts()
    mitigated_at: datetime | None = _ts()
    resolved_at: datetime | None = _ts()
    closed_at: datetime | None = _ts()

    @property
    def ref(self) -> str:
        return f"INC-{self.number}"

    def milestone(self, name: str) -> datetime | None:
        return getattr(self, f"{name}_at")


class RoleAssignment(SQLModel, table=True):
    __tablename__ = "role_assignment"
    __table_args__ = (Index("ix_role_assignment_active", "incident_id", "role", "ended_at"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    role: str = Field(max_length=32)
    user: str = Field(max_length=128)
    assigned_by: str = Field(max_length=128)
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ended_at: datetime | None = _ts()
    ended_by: str | None = Field(default=None, max_length=128)


class TimelineEvent(SQLModel, table=True):
    """Append-only: the database refuses UPDATE and DELETE on this table (see migration 0001)."""

    __tablename__ = "timeline_event"
    __table_args__ = (
        Index("ix_timeline_incident_order", "incident_id", "occurred_at", "id"),
        # One kind of event, across incidents (a group's snooze) or on one (its status updates).
        Index("ix_timeline_kind", "kind", "incident_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id")
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    kind: str = Field(max_length=64)
    actor: str = Field(max_length=128)
    summary: str = Field(sa_column=Column(Text, nullable=False))
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    source_key: str | None = Field(default=None, max_length=200, unique=True)


class ActionItem(SQLModel, table=True):
    __tablename__ = "action_item"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    owner: str | None = Field(default=None, max_length=128)
    due_date: date | None = Field(default=None, sa_column=Column(Date))
    priority: str = Field(default="medium", max_length=16)
    status: str = Field(default="open", max_length=16, index=True)
    status_reason: str | None = Field(default=None, sa_column=Column(Text))
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    done_at: datetime | None = _ts()
    # What it came from (a Slack message turned into an action item): recorded once.
    source_key: str | None = Field(default=None, max_length=200, unique=True)
    # Where it is tracked besides here (a GitHub issue it was exported to).
    external_url: str | None = Field(default=None, max_length=500)
    # An export under way (or one that died before it could record its issue): another
    # process exporting the same item waits for it instead of opening a second issue.
    export_started_at: datetime | None = _ts()
    export_started_by: str | None = Field(default=None, max_length=128)
