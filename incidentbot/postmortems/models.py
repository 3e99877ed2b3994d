"""Tables of postmortems.

A postmortem is one per incident: its lifecycle (draft, in review, published), whether the
severity policy requires it and when it is due, and the sections people write (what went
well, what went wrong, where we got lucky, contributing factors, and any a team adds) and the
impact in numbers. Everything else in the
document is built from the timeline when it is rendered.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Date, Text
from sqlmodel import Field, SQLModel

from incidentbot.db import UTCDateTime

DRAFT = "draft"
IN_REVIEW = "in_review"
PUBLISHED = "published"
STATUSES = (DRAFT, IN_REVIEW, PUBLISHED)


def _ts() -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class Postmortem(SQLModel, table=True):
    __tablename__ = "postmortem"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", unique=True)
    status: str = Field(default=DRAFT, max_length=16, index=True)
    required: bool = False
    due_date: date | None = Field(default=None, sa_column=Column(Date))
    # Section name -> text people wrote (what_went_well, what_went_wrong, lucky, factors, …).
    sections: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The impact in numbers people typed: key -> {"value": int, "by": actor, "at": ISO time}
    # (incidentbot.postmortems.impact_numbers); None until someone types one.
    impact: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    owner: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    review_started_at: datetime | None = _ts()
    published_at: datetime | None = _ts()
    published_path: str | None = Field(default=None, sa_column=Column(Text))
