"""Reading incidents and writing their timeline: what every incident module builds on.

The timeline is append-only (the database refuses UPDATE and DELETE on it); :func:`record` is
the one way events are written, always in the transaction of the change they describe.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from incidentbot import policy
from incidentbot.config import Settings
from incidentbot.durations import ensure_utc
from incidentbot.errors import DomainError, NotFound
from incidentbot.incidents.models import Incident, RoleAssignment, TimelineEvent
from incidentbot.ledger.redact import redact_strings, redact_text

_REF = re.compile(r"^\s*#?(?:inc-?)?(\d+)\s*$", re.IGNORECASE)


# -- reading -----------------------------------------------------------------------------------


def parse_ref(ref: str | int) -> int:
    """``INC-12``, ``inc12``, ``#12`` and ``12`` all name incident number 12."""
    match = _REF.match(str(ref))
    if not match:
        raise DomainError(f"{ref!r} is not an incident reference: use INC-<number>, e.g. INC-12")
    return int(match.group(1))


def get(session: Session, ref: str | int, *, for_update: bool = False) -> Incident:
    number = parse_ref(ref)
    stmt = select(Incident).where(Incident.number == number)
    if for_update:
        stmt = stmt.with_for_update()
    incident = session.exec(stmt).first()
    if incident is None:
        raise NotFound(f"no incident INC-{number}")
    return incident


def get_by_channel(session: Session, channel_id: str) -> Incident | None:
    return session.exec(select(Incident).where(Incident.channel_id == channel_id)).first()


def list_incidents(
    session: Session, settings: Settings, *, include_terminal: bool = False
) -> list[Incident]:
    stmt = select(Incident).order_by(col(Incident.number).desc())
    if not include_terminal:
        stmt = stmt.where(col(Incident.status).not_in(policy.terminal_statuses(settings)))
    return list(session.exec(stmt))


def timeline(session: Session, incident: Incident) -> list[TimelineEvent]:
    stmt = (
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident.id)
        .order_by(col(TimelineEvent.occurred_at), col(TimelineEvent.id))
    )
    return list(session.exec(stmt))


def has_event(session: Session, source_key: str) -> bool:
    """Whether an event from this source (a pinned message, a webhook) is already recorded."""
    stmt = select(TimelineEvent.id).where(TimelineEvent.source_key == source_key)
    return session.exec(stmt).first() is not None


def active_roles(session: Session, incident: Incident) -> list[RoleAssignment]:
    stmt = (
        select(RoleAssignment)
        .where(RoleAssignment.incident_id == incident.id)
        .where(col(RoleAssignment.ended_at).is_(None))
        .order_by(col(RoleAssignment.started_at), col(RoleAssignment.id))
    )
    return list(session.exec(stmt))


# -- writing -----------------------------------------------------------------------------------


def record(
    session: Session,
    incident: Incident | int,
    kind: str,
    actor: str,
    summary: str,
    *,
    now: datetime,
    occurred_at: datetime | None = None,
    data: dict[str, Any] | None = None,
    source_key: str | None = None,
) -> TimelineEvent:
    """Append one timeline event (the only way events are written). ``incident`` may be the
    incident or its id. Secrets in the summary and the data's text are masked here, so none
    reaches the timeline (nor the postmortem built from it) whoever wrote the event."""
    event = TimelineEvent(
        incident_id=_id(incident),
        occurred_at=occurred_at or now,
        recorded_at=now,
        kind=kind,
        actor=actor,
        summary=redact_text(summary),
        data=redact_strings(data or {}),
        source_key=source_key,
    )
    session.add(event)
    return event


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _id(incident: Incident | int) -> int:
    if isinstance(incident, int):
        return incident
    assert incident.id is not None, "incident must be flushed first"
    return incident.id


def _clean_actor(user: str, what: str) -> str:
    user = str(user).strip()
    if not user:
        raise DomainError(f"{what} is empty: name a person")
    return user


def _check_past(name: str, when: datetime, now: datetime) -> datetime:
    when = ensure_utc(when)
    if when > now:
        raise DomainError(
            f"{name.replace('_', ' ')} time {when.isoformat()} is in the future: "
            "it can only be now or earlier"
        )
    return when


def _require_open(settings: Settings, incident: Incident, doing: str) -> None:
    if incident.status in policy.terminal_statuses(settings):
        raise DomainError(f"{incident.ref} is {incident.status}: cannot {doing}; reopen it first")
