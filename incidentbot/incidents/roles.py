"""Roles: one holder per role, the commander always present, every handover recorded."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from incidentbot import policy
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident, RoleAssignment
from incidentbot.incidents.records import (
    _clean_actor,
    _id,
    _require_open,
    active_roles,
    get,
    record,
)


def _start_role(
    session: Session, incident: Incident, role: str, user: str, actor: str, now: datetime
) -> None:
    session.add(
        RoleAssignment(
            incident_id=_id(incident), role=role, user=user, assigned_by=actor, started_at=now
        )
    )
    record(
        session,
        incident,
        "role.assigned",
        actor,
        f"{user} is {role}",
        now=now,
        data={"role": role, "user": user, "previous": None},
    )


def assign_role(
    session: Session,
    settings: Settings,
    ref: str | int,
    role: str,
    user: str,
    *,
    actor: str,
    now: datetime | None = None,
) -> Incident:
    """Give ``role`` to ``user``. Each role has one holder; the previous one hands over."""
    now = now or utcnow()
    incident = get(session, ref, for_update=True)
    r = policy.role(settings, role)
    user = _clean_actor(user, "the assignee")
    _require_open(settings, incident, "assign roles")
    current = [a for a in active_roles(session, incident) if a.role == r.name]
    if any(a.user == user for a in current):
        raise DomainError(f"{user} is already {r.name} of {incident.ref}")
    previous = current[0].user if current else None
    for assignment in current:
        assignment.ended_at = now
        assignment.ended_by = actor
        session.add(assignment)
    session.add(
        RoleAssignment(
            incident_id=_id(incident), role=r.name, user=user, assigned_by=actor, started_at=now
        )
    )
    if r.name == "commander":
        incident.commander = user
    incident.updated_at = now
    session.add(incident)
    summary = f"{user} is {r.name}" + (f" (handover from {previous})" if previous else "")
    record(
        session,
        incident,
        "role.handover" if previous else "role.assigned",
        actor,
        summary,
        now=now,
        data={"role": r.name, "user": user, "previous": previous},
    )
    return incident


def unassign_role(
    session: Session,
    settings: Settings,
    ref: str | int,
    role: str,
    *,
    actor: str,
    now: datetime | None = None,
) -> Incident:
    now = now or utcnow()
    incident = get(session, ref, for_update=True)
    r = policy.role(settings, role)
    if r.name == "commander":
        raise DomainError(
            "an incident always has a commander: assign the role to someone else instead"
        )
    current = [a for a in active_roles(session, incident) if a.role == r.name]
    if not current:
        raise DomainError(f"nobody is {r.name} of {incident.ref}")
    for assignment in current:
        assignment.ended_at = now
        assignment.ended_by = actor
        session.add(assignment)
        record(
            session,
            incident,
            "role.unassigned",
            actor,
            f"{assignment.user} is no longer {r.name}",
            now=now,
            data={"role": r.name, "user": assignment.user},
        )
    incident.updated_at = now
    session.add(incident)
    return incident
