"""The incident lifecycle: plain functions over a session, each appending its timeline event.

Callers wrap a call in ``incidentbot.db.transaction`` so that the change and its event commit
together or not at all. Nothing here knows about Slack, PagerDuty or the CLI; actors are plain
strings such as ``U123`` (Slack) or ``alice`` (CLI). Reading and the timeline live in
:mod:`incidentbot.incidents.records`, roles in :mod:`incidentbot.incidents.roles`; both are
re-exported here so that callers use one module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, text
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, col, select

from incidentbot import policy
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.models import (
    SETTABLE_MILESTONES,
    Counter,
    Incident,
    RoleAssignment,
    TimelineEvent,
)
from incidentbot.incidents.records import (
    _check_past,
    _clean_actor,
    _require_open,
    _stamp,
    active_roles,
    event_row,
    get,
    get_by_channel,
    has_event,
    insert_events,
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
from incidentbot.ledger.redact import redact_text
from incidentbot.postmortems import lifecycle as postmortems

__all__ = [
    "TimelineEvent",
    "active_roles",
    "add_note",
    "assign_role",
    "close",
    "declare",
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

MAX_TITLE = 200
MAX_NOTE = 4000
STATUS_UPDATE = "status.update"  # the timeline kind of a status update


INCIDENT_SEQUENCE = "incident_number"  # PostgreSQL (migration 0021)


def _next_number(session: Session) -> int:
    # Taken after every check of the declare's input. On PostgreSQL from a sequence, which no
    # transaction locks, so concurrent declares run side by side; a declare that then fails at
    # the database (a lost connection, a crash, a racing duplicate key) leaves its number
    # unused. On SQLite from the counter row, under the write lock every writer takes anyway:
    # a failed declare gives its number back.
    if session.get_bind().dialect.name == "postgresql":
        return int(session.execute(text(f"SELECT nextval('{INCIDENT_SEQUENCE}')")).scalar_one())
    value = session.execute(
        text("UPDATE counter SET value = value + 1 WHERE name = 'incident' RETURNING value")
    ).scalar_one_or_none()
    if value is None:
        session.add(Counter(name="incident", value=1))
        session.flush()
        return 1
    return int(value)


def _clean_title(title: str) -> str:
    # Masked before anything uses it: the title names the channel and is announced.
    cleaned = " ".join(redact_text(str(title)).split())
    if not cleaned:
        raise DomainError("the title is empty: say in a few words what is wrong")
    if len(cleaned) > MAX_TITLE:
        raise DomainError(f"the title is {len(cleaned)} characters long: at most {MAX_TITLE}")
    return cleaned


def declare(
    session: Session,
    settings: Settings,
    *,
    title: str,
    severity: str,
    actor: str,
    description: str | None = None,
    fields: dict[str, str] | None = None,
    commander: str | None = None,
    impact_started_at: datetime | None = None,
    detected_at: datetime | None = None,
    idempotency_key: str | None = None,
    private: bool = False,
    now: datetime | None = None,
) -> Incident:
    """Open an incident with the next INC number. A repeated ``idempotency_key`` returns the
    incident it already opened instead of a second one. A ``private`` incident gets a private
    channel and stays out of the digest and public reports."""
    now = now or utcnow()
    if idempotency_key:
        existing = session.exec(
            select(Incident).where(Incident.idempotency_key == idempotency_key)
        ).first()
        if existing is not None:
            return existing
    clean_title = _clean_title(title)
    sev = policy.severity(settings, severity)
    clean_fields = policy.check_fields(settings, fields or {}, declaring=True)
    actor = _clean_actor(actor, "the declarer")
    commander = _clean_actor(commander, "the commander") if commander else actor
    impact = _check_past("impact_started", impact_started_at, now) if impact_started_at else None
    detected = _check_past("detected", detected_at, now) if detected_at else None

    incident = Incident(
        number=_next_number(session),
        title=clean_title,
        description=redact_text(description or "").strip() or None,
        severity=sev.name,
        status=settings.statuses[0].name,
        fields=clean_fields,
        commander=commander,
        declared_by=actor,
        idempotency_key=idempotency_key,
        private=True if private else None,
        created_at=now,
        updated_at=now,
        declared_at=now,
        impact_started_at=impact,
        detected_at=detected,
    )
    # Written with three Core statements (the incident, its commander, its first events) and
    # no unit-of-work flush; the incident then joins the session as if read, so later changes
    # in this transaction are UPDATEs.
    _insert_incident(session, incident)
    data: dict[str, Any] = {"title": clean_title, "severity": sev.name, "fields": clean_fields}
    if description:
        data["description"] = incident.description
    events = [
        event_row(
            incident,
            "incident.declared",
            actor,
            f"Declared {incident.ref} ({sev.name}): {clean_title}",
            now=now,
            data=data,
        )
    ]
    for name, when in (("impact_started", impact), ("detected", detected)):
        if when is not None:
            events.append(
                event_row(
                    incident,
                    "milestone.set",
                    actor,
                    f"{name.replace('_', ' ').capitalize()} at {_stamp(when)}",
                    now=now,
                    data={"milestone": name, "at": when.isoformat(), "previous": None},
                )
            )
    session.execute(
        insert(RoleAssignment),
        [
            {
                "incident_id": incident.id,
                "role": "commander",
                "user": commander,
                "assigned_by": actor,
                "started_at": now,
            }
        ],
    )
    events.append(
        event_row(
            incident,
            "role.assigned",
            actor,
            f"{commander} is commander",
            now=now,
            data={"role": "commander", "user": commander, "previous": None},
        )
    )
    insert_events(session, events)
    return incident


def _insert_incident(session: Session, incident: Incident) -> None:
    table = Incident.__table__  # type: ignore[attr-defined]
    values = {c.key: getattr(incident, c.key) for c in table.columns if c.key != "id"}
    incident.id = session.execute(insert(table).values(values).returning(table.c.id)).scalar_one()
    make_transient_to_detached(incident)
    session.add(incident)


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
