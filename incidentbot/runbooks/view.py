"""A runbook run as people see it: the state of each step, who asked, who approved, what is
next. Read from the database in one transaction; the Slack message, the CLI and the run page
all render this, so they never disagree."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from incidentbot.db import db_now
from incidentbot.incidents.models import Incident
from incidentbot.ledger import service as ledger
from incidentbot.ledger.models import (
    NEEDS_ATTENTION,
    PARKED,
    STEP_FAILED,
    STEP_PENDING,
    STEP_SKIPPED,
    STEP_STARTED,
    STEP_SUCCEEDED,
)
from incidentbot.runbooks import engine, planning, run_context
from incidentbot.runbooks.actions import registry
from incidentbot.runbooks.executor import approvals_of
from incidentbot.runbooks.models import RunbookRun

log = logging.getLogger(__name__)

DETAIL_CHARS = 200


@dataclass
class StepView:
    index: int  # 0-based ledger index
    id: str
    label: str
    status: str  # waiting, running, retrying, done, failed, skipped, unknown
    detail: str = ""
    elapsed: float | None = None
    rollback: bool = False
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 0


@dataclass
class RunView:
    run_id: int
    runbook: str
    description: str
    status: str  # the ledger's, or "awaiting_approval"
    requester: str
    params: dict[str, str]
    target: str | None
    approval: str
    approvals_needed: int
    approvals: list[tuple[str, str]]  # (user, decision)
    deadline: datetime | None
    steps: list[StepView]
    error: str | None
    incident_ref: str | None
    created_at: datetime
    finished_at: datetime | None
    now: datetime
    channel_id: str | None
    message_ts: str | None
    commander: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")

    @property
    def elapsed(self) -> float:
        end = self.finished_at or self.now
        return max(0.0, (end - self.created_at).total_seconds())


def _status(step: Any) -> str:
    if step.status == STEP_SUCCEEDED:
        return "skipped" if (step.output or {}).get("skipped") is True else "done"
    if step.status == STEP_FAILED:
        return "failed"
    if step.status == STEP_SKIPPED:
        return "skipped"
    if step.status == STEP_STARTED:
        return "running"
    if step.status == STEP_PENDING and step.attempts:
        return "retrying"
    return "waiting"


def describe(uses: str | None, output: dict[str, Any]) -> str:
    """What a finished step did, in the action's own sentence (see ``Action.describe``); the
    JSON of its outputs when the action is unknown here or its sentence failed."""
    action = registry.get(uses) if uses else None
    if action is not None:
        try:
            return str(action.describe(dict(output)))
        except Exception:
            log.warning("%s could not describe its outputs", uses, exc_info=True)
    return json.dumps(output, sort_keys=True, default=str)


def _detail(step: Any, status: str, uses: str | None = None) -> str:
    if status in ("failed", "retrying", "unknown") and step.error:
        text = step.error
    elif status == "skipped" and (step.output or {}).get("reason"):
        text = str(step.output["reason"])
    elif status == "skipped" and step.error:
        text = step.error
    elif status == "done" and step.output:
        text = describe(uses, step.output)
    else:
        return ""
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def load(session: Session, run_id: int) -> RunView:
    row, runbook = engine.load(session, run_id)
    run = ledger.get_run(session, run_id, with_spec=False)
    now = db_now(session)
    incident = session.get(Incident, row.incident_id) if row.incident_id else None
    steps: list[StepView] = []
    deadline = None
    for st in ledger.get_steps(session, run_id):
        if st.action == planning.ANNOUNCE_ACTION:
            continue
        if st.action == planning.APPROVAL_ACTION:
            deadline = st.deadline_at if st.decision is None else None
            continue
        step_id = (st.input or {}).get("step", "")
        status = _status(st)
        if status == "running" and run.status == NEEDS_ATTENTION and run.cursor == st.idx:
            status = "unknown"
        elapsed = None
        if st.started_at is not None:
            elapsed = ((st.finished_at or now) - st.started_at).total_seconds()
            if status in ("waiting", "retrying") and st.finished_at is None:
                elapsed = None
        steps.append(
            StepView(
                index=st.idx,
                id=step_id,
                label=st.name,
                status=status,
                detail=_detail(st, status, getattr(runbook.step(step_id), "uses", None)),
                elapsed=elapsed,
                rollback=runbook.step(step_id) is not None
                and step_id not in {s.id for s in runbook.steps},
                output=dict(st.output or {}),
                error=st.error,
                attempts=st.attempts,
            )
        )
    status = run.status
    gate_waiting = deadline is not None and run.status in (PARKED, "pending", "running")
    if gate_waiting and run.status == PARKED:
        status = "awaiting_approval"
    return RunView(
        run_id=run_id,
        runbook=row.runbook,
        description=runbook.description,
        status=status,
        requester=row.requester,
        params=run_context.shown_params(runbook, row.params),
        target=run_context.shown_target(runbook, row.params, run.target),
        approval=row.approval,
        approvals_needed=row.approvals_needed,
        approvals=[(a.user, a.decision) for a in approvals_of(session, row)],
        deadline=deadline if status == "awaiting_approval" else None,
        steps=steps,
        error=run.error,
        incident_ref=incident.ref if incident else None,
        created_at=run.created_at,
        finished_at=run.finished_at,
        now=now,
        channel_id=row.channel_id,
        message_ts=row.message_ts,
        commander=incident.commander if incident else None,
    )


def runs_of(session: Session, incident_id: int | None, limit: int = 20) -> list[RunbookRun]:
    stmt = select(RunbookRun).order_by(RunbookRun.id.desc()).limit(limit)  # type: ignore[union-attr]
    if incident_id is not None:
        stmt = stmt.where(RunbookRun.incident_id == incident_id)
    return list(session.exec(stmt).all())
