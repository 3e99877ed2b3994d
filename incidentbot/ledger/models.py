"""Tables of the run ledger: runs, their steps, and per-target locks.

A run is one piece of durable work (create a channel, page on-call, a runbook execution). Its
``spec`` column is the snapshot of the steps it was started with, so a deploy that renames or
changes a step never strands a run already under way. Step rows mirror the spec one to one and
carry what happened: attempts, redacted input and output, errors, and for a step that waits for
a person, the deadline and the decision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from incidentbot.db import UTCDateTime

# Run statuses.
PENDING = "pending"  # waiting for a worker (possibly not before ``wake_at``: a retry backoff)
RUNNING = "running"  # held by ``owner`` until ``lease_expires_at``
PARKED = "parked"  # waiting for an outside decision until ``wake_at`` (the deadline)
SUCCEEDED = "succeeded"
FAILED = "failed"
NEEDS_ATTENTION = "needs_attention"  # a step may or may not have happened: a person decides
CANCELLED = "cancelled"

RUN_STATUSES = (PENDING, RUNNING, PARKED, SUCCEEDED, FAILED, NEEDS_ATTENTION, CANCELLED)
# Statuses that release the target lock. ``needs_attention`` keeps it on purpose: the target is
# in an unknown state and nothing else should touch it until someone has looked.
ENDED = (SUCCEEDED, FAILED, CANCELLED)
# Statuses no worker will pick up again.
SETTLED = (*ENDED, NEEDS_ATTENTION)

# Step statuses.
STEP_PENDING = "pending"
STEP_STARTED = "started"
STEP_SUCCEEDED = "succeeded"
STEP_FAILED = "failed"
STEP_SKIPPED = "skipped"
STEP_STATUSES = (STEP_PENDING, STEP_STARTED, STEP_SUCCEEDED, STEP_FAILED, STEP_SKIPPED)

# The decision recorded when a parked run's deadline passes before anyone decided.
EXPIRED = "expired"


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class Run(SQLModel, table=True):
    __tablename__ = "ledger_run"
    __table_args__ = (Index("ix_ledger_run_claim", "status", "wake_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=64)
    idempotency_key: str = Field(max_length=200, unique=True)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=32)
    owner: str | None = Field(default=None, max_length=128)
    lease_expires_at: datetime | None = _ts()
    cursor: int = 0
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    target: str | None = Field(default=None, max_length=200, index=True)
    created_by: str = Field(max_length=128)
    error: str | None = Field(default=None, sa_column=Column(Text))
    # Earliest time a pending run is retried, or the deadline of a parked one.
    wake_at: datetime | None = _ts()
    cancel_requested_at: datetime | None = _ts()
    cancel_requested_by: str | None = Field(default=None, max_length=128)
    takeovers: int = 0
    # The (0-based) step that failed for good while its rollback steps run; None otherwise.
    failed_step: int | None = None
    lock_acquired_at: datetime | None = _ts()
    lock_released_at: datetime | None = _ts()

    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()

    @property
    def step_count(self) -> int:
        return len(self.spec.get("steps", []))


class Step(SQLModel, table=True):
    __tablename__ = "ledger_step"
    __table_args__ = (UniqueConstraint("run_id", "idx", name="uq_ledger_step_run_idx"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="ledger_run.id", index=True)
    idx: int  # 0-based position in the spec; people see idx + 1
    name: str = Field(max_length=200)
    action: str = Field(max_length=128)
    status: str = Field(default=STEP_PENDING, max_length=16)
    attempts: int = 0
    idempotent: bool = False
    input: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    output: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text))
    next_attempt_at: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    # Parking: a step that waits for a decision before it runs.
    deadline_at: datetime | None = _ts()
    decision: str | None = Field(default=None, max_length=32)
    decided_by: str | None = Field(default=None, max_length=128)
    decided_at: datetime | None = _ts()

    @property
    def number(self) -> int:
        return self.idx + 1

    @property
    def label(self) -> str:
        return f"step {self.number} {self.name!r}"


class TargetLock(SQLModel, table=True):
    """One row per locked target; the unique constraint is the lock."""

    __tablename__ = "ledger_lock"

    id: int | None = Field(default=None, primary_key=True)
    target: str = Field(max_length=200, unique=True)
    run_id: int = Field(foreign_key="ledger_run.id", index=True)
    acquired_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
