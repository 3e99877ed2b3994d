"""Pages: the PagerDuty incidents an incident of ours opened, and their state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from incidentbot.db import UTCDateTime


def _ts() -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class Page(SQLModel, table=True):
    __tablename__ = "page"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    service: str = Field(max_length=64)
    # Derived from our incident and the service: a retried page finds the one it opened.
    key: str = Field(max_length=200, unique=True)
    requested_by: str = Field(max_length=128)
    message: str | None = Field(default=None, max_length=1000)
    status: str = Field(default="requested", max_length=32)
    external_id: str | None = Field(default=None, max_length=64, index=True)
    number: int | None = None
    url: str | None = Field(default=None, max_length=500)
    requested_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    triggered_at: datetime | None = _ts()
    acknowledged_at: datetime | None = _ts()
    acknowledged_by: str | None = Field(default=None, max_length=200)
    resolved_at: datetime | None = _ts()
