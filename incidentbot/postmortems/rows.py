"""The rows a postmortem document is built from, read in one session.

The incident's timeline, role assignments, runbook runs and their approvals, pages, action
items and postmortem row (or the draft it would start as).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, type_coerce
from sqlmodel import Session, col, select

from incidentbot.config import Settings
from incidentbot.incidents.models import ActionItem, Incident, RoleAssignment, TimelineEvent
from incidentbot.paging.models import Page
from incidentbot.postmortems import lifecycle
from incidentbot.postmortems.models import Postmortem
from incidentbot.runbooks.models import RunbookApproval, RunbookRun


@dataclass(slots=True)
class Event:
    """A timeline event's plain values: a document reads thousands, and building an ORM
    instance for each costs more than everything else it does with them (not frozen: a frozen
    dataclass sets each field through ``object.__setattr__``, several times slower; nothing
    changes one)."""

    id: int
    occurred_at: datetime
    kind: str
    actor: str
    summary: str
    data: dict[str, Any]


def read_events(session: Session, incident: Incident) -> list[Event]:
    """The incident's timeline, in order (time, then the order it was recorded)."""
    stmt = (
        select(
            TimelineEvent.id,
            TimelineEvent.occurred_at,
            TimelineEvent.kind,
            TimelineEvent.actor,
            TimelineEvent.summary,
            type_coerce(TimelineEvent.data, Text),  # decoded below, only when not empty
        )
        .where(TimelineEvent.incident_id == incident.id)
        .order_by(col(TimelineEvent.occurred_at), col(TimelineEvent.id))
    )
    rows = session.connection().execute(stmt).all()  # Core rows, fetched at once: no ORM
    return [Event(i, at, kind, actor, summary, _data(raw)) for i, at, kind, actor, summary, raw in
            rows]  # fmt: skip


def _data(raw: object) -> dict[str, Any]:
    """An event's data from its stored JSON (a driver may have decoded it already)."""
    if isinstance(raw, dict):
        return raw
    if not raw or raw == "{}":
        return {}
    value = json.loads(str(raw))
    return value if isinstance(value, dict) else {}


@dataclass
class Rows:
    """The rows a document is built from."""

    postmortem: Postmortem
    events: list[Event]
    roles: list[RoleAssignment]
    runs: list[RunbookRun]
    approvals: dict[int, list[RunbookApproval]]
    pages: list[Page]
    items: list[ActionItem]


def load(
    session: Session, settings: Settings, incident: Incident, postmortem: Postmortem | None
) -> Rows:
    """Everything about ``incident`` a document shows; ``postmortem`` defaults to the stored
    row (or the draft it would start as)."""
    roles = session.exec(
        select(RoleAssignment)
        .where(RoleAssignment.incident_id == incident.id)
        .order_by(col(RoleAssignment.started_at), col(RoleAssignment.id))
    )
    runs = list(
        session.exec(
            select(RunbookRun)
            .where(RunbookRun.incident_id == incident.id)
            .order_by(col(RunbookRun.id))
        )
    )
    pages = session.exec(select(Page).where(Page.incident_id == incident.id).order_by(col(Page.id)))
    items = session.exec(
        select(ActionItem).where(ActionItem.incident_id == incident.id).order_by(col(ActionItem.id))
    )
    events = read_events(session, incident)
    return Rows(
        postmortem=postmortem or lifecycle.current(session, settings, incident, events),
        events=events,
        roles=list(roles),
        runs=runs,
        approvals=_approvals(session, runs),
        pages=list(pages),
        items=list(items),
    )


def _approvals(session: Session, rows: list[RunbookRun]) -> dict[int, list[RunbookApproval]]:
    """The approvals of each run (by the run's row id), in the order they were given."""
    ids = [r.id for r in rows if r.id is not None]
    out: dict[int, list[RunbookApproval]] = {}
    if not ids:
        return out
    stmt = (
        select(RunbookApproval)
        .where(col(RunbookApproval.runbook_run_id).in_(ids))
        .order_by(col(RunbookApproval.at), col(RunbookApproval.id))
    )
    for a in session.exec(stmt):
        out.setdefault(a.runbook_run_id, []).append(a)
    return out
