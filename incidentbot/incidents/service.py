"""The incident lifecycle: plain functions over a session, each appending its timeline event.

Callers wrap a call in ``incidentbot.db.transaction`` so that the change and its event commit
together or not at all. Nothing here knows about Slack, PagerDuty or the CLI; actors are plain
strings such as ``U123`` (Slack) or ``alice`` (CLI). Reading and the timeline live in
:mod:`incidentbot.incidents.records`, roles in :mod:`incidentbot.incidents.roles`, declaring in
:mod:`incidentbot.incidents.declaring`; all are re-exported here so that callers use one module.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_
from sqlmodel import Session, col, select

from incidentbot import policy
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.declaring import MAX_TITLE, declare, declare_claimed
from incidentbot.incidents.models import (
    SETTABLE_MILESTONES,
    Incident,
    TimelineEvent,
)
from incidentbot.incidents.records import (
    _check_past,
    _require_open,
    _stamp,
    active_roles,
    get,
    get_by_channel,
    has_event,
    latest,
    list_incidents,
    next_in_sequence,
    parse_ref,
    record,
    record_many,
    refresh_counter,
    timeline,
)
from incidentbot.incidents.roles import assign_role, unassign_role
from incidentbot.postmortems import lifecycle as postmortems

__all__ = [
    "MAX_TITLE",
    "TimelineEvent",
    "active_roles",
    "add_note",
    "assign_role",
    "close",
    "declare",
    "declare_claimed",
    "get",
    "get_by_channel",
    "has_event",
    "latest",
    "list_incidents",
    "next_in_sequence",
    "parse_ref",
    "record",
    "record_many",
    "refresh_counter",
    "reopen",
    "resolve",
    "set_milestone",
    "set_severity",
    "set_status",
    "timeline",
    "unassign_role",
]

MAX_NOTE = 4000
STATUS_UPDATE = "status.update"  # the timeline kind of a status update


def set_severity(
    session: Session,
    settings: Settings,
    ref: str | int,
    severity: str,
    *,
    actor: str,
    now: datetime | None = None,
) -> Incident:
    now = now or utcnow()
    incident = get(session, ref, for_update=True)
    sev = policy.severity(settings, severity)
    if incident.status == "closed":
        raise DomainError(f"{incident.ref} is closed: cannot change severity; reopen it first")
    if sev.name == incident.severity:
        raise DomainError(f"{incident.ref} is already {sev.name}")
    previous = incident.severity
    incident.severity = sev.name
    incident.updated_at = now
    session.add(incident)
    names = settings.severity_names()
    direction = "Raised" if names.index(sev.name) < names.index(previous) else "Lowered"
    record(
        session,
        incident,
        "severity.changed",
        actor,
        f"{direction} severity {previous} → {sev.name}",
        now=now,
        data={"from": previous, "to": sev.name},
    )
    return incident


def set_status(
    session: Session,
    settings: Settings,
    ref: str | int,
    status: str,
    *,
    actor: str,
    now: datetime | None = None,
) -> Incident:
    now = now or utcnow()
    incident = get(session, ref, for_update=True)
    st = policy.status(settings, status)
    if st.name == "resolved":
        raise DomainError("resolving needs a summary: use `resolve <summary>`")
    if st.name == "closed":
        raise DomainError("use `close` to close a resolved incident")
    _require_open(settings, incident, "change its status")
    if st.name == incident.status:
        raise DomainError(f"{incident.ref} is already {st.name}")
    previous = incident.status
    incident.status = st.name
    incident.updated_at = now
    milestones: dict[str, str] = {}
    if previous == settings.statuses[0].name and incident.acknowledged_at is None:
        incident.acknowledged_at = now
        milestones["acknowledged"] = now.isoformat()
    if st.name == "monitoring" and incident.mitigated_at is None:
        incident.mitigated_at = now
        milestones["mitigated"] = now.isoformat()
    session.add(incident)
    record(
        session,
        incident,
        "status.changed",
        actor,
        f"Status {previous} → {st.name}",
        now=now,
        data={"from": previous, "to": st.name, "milestones": milestones},
    )
    return incident


def set_milestone(
    session: Session,
    settings: Settings,
    ref: str | int,
    milestone: str,
    when: datetime,
    *,
    actor: str,
    now: datetime | None = None,
    via: str | None = None,
) -> Incident:
    """Set impact start, detection, acknowledgement or mitigation, possibly in the past;
    ``via`` says where it was given when not by a command of its own (``resolve``: the resolve
    form asked for it)."""
    now = now or utcnow()
    name = milestone.strip().lower().replace("-", "_").replace(" ", "_")
    if name not in SETTABLE_MILESTONES:
        raise DomainError(
            f"unknown milestone {milestone!r}: allowed are {', '.join(SETTABLE_MILESTONES)}"
        )
    incident = get(session, ref, for_update=True)
    if incident.status == "closed":
        raise DomainError(f"{incident.ref} is closed: reopen it to change its milestones")
    when = _check_past(name, when, now)
    previous = incident.milestone(name)
    setattr(incident, f"{name}_at", when)
    incident.updated_at = now
    session.add(incident)
    record(
        session,
        incident,
        "milestone.set",
        actor,
        f"{name.replace('_', ' ').capitalize()} at {_stamp(when)}",
        now=now,
        data={
            "milestone": name,
            "at": when.isoformat(),
            "previous": previous.isoformat() if previous else None,
            **({"via": via} if via else {}),
        },
    )
    return incident


def add_note(
    session: Session,
    settings: Settings,
    ref: str | int,
    note: str,
    *,
    actor: str,
    now: datetime | None = None,
    occurred_at: datetime | None = None,
    kind: str = "note",
    source_key: str | None = None,
) -> TimelineEvent:
    now = now or utcnow()
    incident = get(session, ref)
    clean = str(note).strip()
    if not clean:
        raise DomainError("the note is empty: write what happened")
    if len(clean) > MAX_NOTE:
        raise DomainError(f"the note is {len(clean)} characters long: at most {MAX_NOTE}")
    # A status update keeps the state it was written under: it is shown with it wherever and
    # whenever it is posted, even if the severity or status changed before Slack took it.
    state = (
        {"severity": incident.severity, "status": incident.status}
        if kind == STATUS_UPDATE
        else None
    )
    return record(
        session,
        incident,
        kind,
        actor,
        clean,
        now=now,
        occurred_at=occurred_at,
        data=state,
        source_key=source_key,
    )


def resolve(
    session: Session,
    settings: Settings,
    ref: str | int,
    summary: str,
    *,
    actor: str,
    now: datetime | None = None,
) -> Incident:
    now = now or utcnow()
    incident = get(session, ref, for_update=True)
    clean = str(summary or "").strip()
    if incident.status in policy.terminal_statuses(settings):
        raise DomainError(f"{incident.ref} is already {incident.status}")
    if not clean:
        raise DomainError("resolving needs a summary: say what fixed it and what is left")
    previous = incident.status
    incident.status = "resolved"
    incident.resolution_summary = clean
    incident.resolved_at = now
    if incident.mitigated_at is None:
        incident.mitigated_at = now
    if incident.acknowledged_at is None:
        incident.acknowledged_at = now
    incident.updated_at = now
    session.add(incident)
    record(
        session,
        incident,
        "incident.resolved",
        actor,
        f"Resolved: {clean}",
        now=now,
        data={"from": previous, "summary": clean},
    )
    # A severity that requires a postmortem gets its draft now, with its due date.
    postmortems.on_resolved(session, settings, incident, now=now)
    return incident


def close(
    session: Session,
    settings: Settings,
    ref: str | int,
    *,
    actor: str,
    now: datetime | None = None,
) -> Incident:
    now = now or utcnow()
    incident = get(session, ref, for_update=True)
    if incident.status == "closed":
        raise DomainError(f"{incident.ref} is already closed")
    if incident.status != "resolved":
        raise DomainError(f"{incident.ref} is {incident.status}: resolve it before closing")
    incident.status = "closed"
    incident.closed_at = now
    incident.updated_at = now
    session.add(incident)
    record(session, incident, "incident.closed", actor, "Closed", now=now, data={})
    return incident


def reopen(
    session: Session,
    settings: Settings,
    ref: str | int,
    *,
    actor: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> Incident:
    now = now or utcnow()
    incident = get(session, ref, for_update=True)
    if incident.status not in policy.terminal_statuses(settings):
        raise DomainError(f"{incident.ref} is {incident.status}, not resolved or closed")
    previous = incident.status
    incident.status = "investigating"
    incident.resolved_at = None
    incident.closed_at = None
    incident.updated_at = now
    session.add(incident)
    clean_reason = (reason or "").strip()
    record(
        session,
        incident,
        "incident.reopened",
        actor,
        "Reopened" + (f": {clean_reason}" if clean_reason else ""),
        now=now,
        data={"from": previous, "reason": clean_reason or None},
    )
    return incident


def public_incidents(
    session: Session,
    *,
    declared_from: datetime | None = None,
    declared_before: datetime | None = None,
) -> list[Incident]:
    """The incidents a public report may show, oldest first: every incident but the private
    ones (declared with ``--private`` or the form's checkbox), optionally those declared in
    ``[declared_from, declared_before)``. Anything published beyond the incident's own
    responders (reports, exports, digests) reads incidents through this."""
    stmt = select(Incident).where(
        or_(col(Incident.private).is_(None), col(Incident.private).is_(False))
    )
    if declared_from is not None:
        stmt = stmt.where(col(Incident.declared_at) >= declared_from)
    if declared_before is not None:
        stmt = stmt.where(col(Incident.declared_at) < declared_before)
    return list(session.exec(stmt.order_by(col(Incident.number))))
