"""The scheduler's table: one row per (job, slot) it fired, skipped or is running.

The unique (job, slot) is what makes a slot fire once: whoever inserts the row runs the job,
everyone else sees the unique violation and skips it. ``outcome`` is NULL while the run is under
way, then ``ok`` or ``failed``; a slot missed beyond its grace is inserted as ``skipped``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from incidentbot.db import UTCDateTime

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"
OUTCOMES = (OK, FAILED, SKIPPED)


class SchedulerRun(SQLModel, table=True):
    __tablename__ = "scheduler_run"
    __table_args__ = (UniqueConstraint("job", "slot", name="uq_scheduler_run_job_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=200)
    # The scheduled time (UTC) this run is for, as the job's trigger computes it.
    slot: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    claimed_by: str = Field(max_length=200)
    started_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    outcome: str | None = Field(default=None, max_length=16)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
