"""Tables of runbook runs: what was run, with which parameters, for whom, and who approved.

The ledger run (``ledger_run``) carries the steps and their state; ``runbook_run`` carries
what only runbooks have: the definition as it was when the run started (a later edit of the
file does not change a run under way), the parameters, the requester, the Slack message that
shows the run, and the approvals.

Secret parameter values are stored here because a run must survive a restart of the bot;
they are never shown: everything displayed goes through the run's masker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from incidentbot.db import UTCDateTime


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class RunbookRun(SQLModel, table=True):
    __tablename__ = "runbook_run"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="ledger_run.id", unique=True)
    runbook: str = Field(max_length=64, index=True)
    digest: str = Field(max_length=16)
    definition: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    params: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    requester: str = Field(max_length=128)
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    approval: str = Field(default="none", max_length=16)
    approvals_needed: int = 0
    source: str = Field(default="slack", max_length=16)
    channel_id: str | None = Field(default=None, max_length=64)
    message_ts: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class RunbookApproval(SQLModel, table=True):
    """One person's decision on a run's approval request (one row per person)."""

    __tablename__ = "runbook_approval"
    __table_args__ = (UniqueConstraint("runbook_run_id", "user", name="uq_runbook_approval_user"),)

    id: int | None = Field(default=None, primary_key=True)
    runbook_run_id: int = Field(foreign_key="runbook_run.id", index=True)
    user: str = Field(max_length=128)
    decision: str = Field(max_length=16)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
