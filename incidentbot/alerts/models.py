"""Tables of alert ingestion: every delivery as received, each group, each alert.

``alert_delivery`` is written and committed first, before routing or declaring, so a webhook
that was accepted is never lost even if what follows fails. ``alert`` has one row per alert
*instance*: Alertmanager's fingerprint (the label set) plus ``startsAt`` (one firing episode),
which is what makes a repeated notification a repeat rather than a new alert. Labels,
annotations and payloads are stored redacted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from incidentbot.db import UTCDateTime

FIRING = "firing"
RESOLVED = "resolved"


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class AlertDelivery(SQLModel, table=True):
    """One authenticated webhook request with a valid payload, as received (redacted)."""

    __tablename__ = "alert_delivery"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    source: str = Field(default="alertmanager", max_length=32)
    remote: str | None = Field(default=None, max_length=64)
    receiver: str = Field(default="", max_length=200)
    group_key: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=16)
    alert_count: int = 0
    truncated_alerts: int = 0
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    processed_at: datetime | None = _ts()
    # What processing did ("INC-3 declared, 4 new alerts") or why it failed.
    outcome: str | None = Field(default=None, sa_column=Column(Text))
    failed: bool = Field(default=False, index=True)


class AlertGroup(SQLModel, table=True):
    """An Alertmanager group (its ``groupKey``) and the incident it currently feeds."""

    __tablename__ = "alert_group"

    id: int | None = Field(default=None, primary_key=True)
    key_hash: str = Field(max_length=64, unique=True)
    group_key: str = Field(sa_column=Column(Text, nullable=False))
    receiver: str = Field(default="", max_length=200)
    group_labels: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    # How many incidents this group has declared: part of each declare's idempotency key.
    incidents_declared: int = 0
    status: str = Field(max_length=16)
    first_received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class AlertRecord(SQLModel, table=True):
    """One alert instance: a fingerprint's firing episode, from ``startsAt`` to resolved."""

    __tablename__ = "alert"
    __table_args__ = (
        UniqueConstraint("fingerprint", "starts_at", name="uq_alert_instance"),
        Index("ix_alert_unmatched", "rule", "last_received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(max_length=64, index=True)
    starts_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ends_at: datetime | None = _ts()
    status: str = Field(max_length=16)
    alertname: str = Field(default="", max_length=200)
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    annotations: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    generator_url: str | None = Field(default=None, sa_column=Column(Text))
    group_id: int = Field(foreign_key="alert_group.id", index=True)
    delivery_id: int = Field(foreign_key="alert_delivery.id")
    # The routing rule that matched (None: no rule matched) and what it gave.
    rule: str | None = Field(default=None, max_length=64)
    severity: str | None = Field(default=None, max_length=16)
    service: str | None = Field(default=None, max_length=64)
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    received_count: int = 1
    first_received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    resolved_received_at: datetime | None = _ts()
    # Why a matching alert has no incident (declare refused by policy), until it gets one.
    error: str | None = Field(default=None, sa_column=Column(Text))


# The alert table, for the Core statements of the ingest path (no ORM instance per alert).
ALERT_TABLE: Table = AlertRecord.__table__  # type: ignore[attr-defined]
