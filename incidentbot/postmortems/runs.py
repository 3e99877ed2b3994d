"""Runbook runs as a postmortem document tells them: the run, its approvals and its steps.

Runs are described from what the application recorded (the timeline and the run's own rows),
not from the ledger's database-clock timings, and step outputs are left to the run's page:
params are shown masked, through each param's ``format_value``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlmodel import Session

from incidentbot import run_links
from incidentbot.config import Settings
from incidentbot.durations import format_duration
from incidentbot.people import BOT_ACTORS, Directory
from incidentbot.postmortems.contents import RunDoc, StepRow
from incidentbot.postmortems.metrics import EventLike, Fmt
from incidentbot.runbooks import view as run_views
from incidentbot.runbooks.models import RunbookApproval, RunbookRun

RUN_ENDS = {
    "runbook.succeeded": "succeeded",
    "runbook.failed": "failed",
    "runbook.cancelled": "cancelled",
    "runbook.needs_attention": "needs attention",
}
STEP_WORDS = {
    "done": "done",
    "failed": "failed",
    "skipped": "skipped",
    "running": "running",
    "retrying": "retrying",
    "waiting": "waiting",
    "not_run": "not run",
    "unknown": "in doubt (may or may not have happened)",
}
RUN_WORDS = {
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "needs_attention": "needs attention",
    "awaiting_approval": "waiting for approval",
    "parked": "waiting",
    "pending": "queued",
    "running": "running",
}


def run_doc(
    session: Session,
    settings: Settings,
    row: RunbookRun,
    approvals: list[RunbookApproval],
    events: list[EventLike],
    names: Directory,
    fmt: Fmt,
    text: Callable[[str], str],
) -> RunDoc:
    """One run as the document shows it: outcome, approvals, params and steps."""
    view = run_views.load(session, row.run_id)
    ended = next(
        (e for e in events if e.kind in RUN_ENDS and e.data.get("run_id") == row.run_id), None
    )
    steps = []
    for number, st in enumerate(view.steps, start=1):
        status = "not_run" if st.status == "waiting" and view.ended else st.status
        detail = ""
        if st.status == "skipped":
            detail = str((st.output or {}).get("reason") or st.error or "")
        elif st.status in ("failed", "retrying", "unknown") and st.error:
            detail = st.error
        steps.append(
            StepRow(
                number=number,
                id=st.id,
                label=st.label,
                outcome=STEP_WORDS.get(status, status.replace("_", " ")),
                status=status,
                detail=text(detail),
                attempts=st.attempts,
                rollback=st.rollback,
            )
        )
    need = {
        "none": "none",
        "commander": "the incident commander",
        "two-person": "two people",
    }.get(row.approval, row.approval)
    link = run_links.link_for(settings, row.run_id)
    duration = None
    if ended is not None:
        duration = format_duration(ended.occurred_at - row.created_at)
    return RunDoc(
        run_id=row.run_id,
        runbook=row.runbook,
        description=view.description,
        status=view.status,
        outcome=RUN_WORDS.get(view.status, view.status.replace("_", " ")),
        requested_by=names(row.requester),
        requested_at=fmt(row.created_at),
        source=row.source,
        target=view.target,
        approval=need,
        approvals=[(names(a.user), a.decision, fmt(a.at)) for a in approvals],
        params=list(view.params.items()),
        steps=steps,
        error=text(view.error) if view.error else None,
        finished_at=fmt(ended.occurred_at) if ended is not None else None,
        duration=duration,
        link=link,
        command=f"incidentbot runs show {row.run_id}",
    )


_RETRY_DELAY = re.compile(r", retrying in \d+s:")


def describe(ev: EventLike, runs: dict[int, RunDoc], text: Callable[[str], str]) -> str:
    """A runbook event as the document says it: from the event's data, since its stored
    summary carries timings measured on the database clock."""
    kind = ev.kind
    run_id = ev.data.get("run_id")
    run = runs.get(run_id) if isinstance(run_id, int) else None
    name = f"{ev.data.get('runbook', run.runbook if run else 'runbook')} (run {run_id})"
    if kind == "runbook.approval_requested":
        need = run.approval if run else "an approver"
        return f"Runbook {name} waits for approval by {need}"
    if kind in RUN_ENDS:
        why = f": {run.error}" if run and run.error and kind != "runbook.succeeded" else ""
        return f"Runbook {name} {RUN_ENDS[kind]}{why}"
    step_id = ev.data.get("step")
    if step_id and kind.startswith("runbook.step_"):
        label = next((s.label for s in (run.steps if run else []) if s.id == step_id), step_id)
        where = f"Runbook {name} step “{label}”"
        output = ev.data.get("output") or {}
        if kind == "runbook.step_succeeded":
            return f"{where}: done"
        if kind == "runbook.step_skipped" and ev.actor in BOT_ACTORS:
            reason = output.get("reason") if isinstance(output, dict) else None
            return f"{where}: skipped" + (f" ({text(str(reason))})" if reason else "")
        if kind == "runbook.step_failed":
            step = next((s for s in (run.steps if run else []) if s.id == step_id), None)
            if step is not None and step.detail:
                return f"{where}: failed: {step.detail}"
        if kind == "runbook.step_retrying":
            return text(_RETRY_DELAY.sub(", retrying:", ev.summary))
    return text(ev.summary)
