"""Read-only views of the ledger's runs with the incident each is for (CLI, Slack, web UI).

They live with the incidents, not in the ledger: the ledger knows a run's subject only as an
opaque id."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident
from incidentbot.incidents.service import parse_ref
from incidentbot.ledger.models import RUN_STATUSES, SETTLED, Run, Step
from incidentbot.ledger.service import get_run, get_steps


@dataclass(frozen=True)
class RunSummary:
    run: Run
    incident_ref: str | None
    step_name: str | None  # the step the run is at (None once past the last)


@dataclass(frozen=True)
class RunDetail:
    run: Run
    incident_ref: str | None
    steps: list[Step]


def list_runs(
    session: Session,
    *,
    status: str | None = None,
    active: bool = False,
    incident: str | None = None,
    target: str | None = None,
    limit: int = 50,
) -> list[RunSummary]:
    """Newest first. ``active`` keeps only runs a worker may still act on (or that wait)."""
    stmt = select(Run, Incident.number).outerjoin(Incident, col(Run.incident_id) == Incident.id)
    if status is not None:
        if status not in RUN_STATUSES:
            raise DomainError(f"unknown status {status!r}: use one of {', '.join(RUN_STATUSES)}")
        stmt = stmt.where(Run.status == status)
    if active:
        stmt = stmt.where(col(Run.status).not_in(SETTLED))
    if incident is not None:
        stmt = stmt.where(Incident.number == parse_ref(incident))
    if target is not None:
        stmt = stmt.where(Run.target == target)
    stmt = stmt.order_by(col(Run.id).desc()).limit(limit)
    rows = list(session.exec(stmt))
    out: list[RunSummary] = []
    for run, number in rows:
        steps = run.spec.get("steps", [])
        name = steps[run.cursor]["name"] if run.cursor < len(steps) else None
        out.append(RunSummary(run, f"INC-{number}" if number is not None else None, name))
    return out


def run_detail(session: Session, run_id: int) -> RunDetail:
    run = get_run(session, run_id)
    ref = None
    if run.incident_id is not None:
        incident = session.get(Incident, run.incident_id)
        ref = incident.ref if incident else None
    return RunDetail(run, ref, get_steps(session, run_id))
