"""Set or clear one incident field after the declare (``validators``, ``chain``, ...).

The value is checked by the configured policy exactly as at declare (the field must be
configured, the value one of its allowed values when it has a list); a required field can be
changed but not cleared. The change and its timeline entry (old and new value) are one
transaction; the caller queues the header refresh in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from incidentbot import policy
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident
from incidentbot.incidents.records import _require_open, get, record

KIND = "field.changed"
MAX_SHOWN = 200


@dataclass(frozen=True)
class FieldChange:
    incident: Incident
    name: str
    label: str
    old: str | None
    new: str | None


def _shown(value: str | None) -> str:
    if value is None:
        return "(unset)"
    return value if len(value) <= MAX_SHOWN else value[: MAX_SHOWN - 1] + "…"


def set_field(
    session: Session,
    settings: Settings,
    ref: str | int,
    name: str,
    value: str | None,
    *,
    actor: str,
    now: datetime | None = None,
) -> FieldChange:
    """Give field ``name`` the value ``value`` (None: clear it). DomainError, with nothing
    changed, for an unknown field, a value the policy refuses, clearing a required field,
    a value it already has, or an incident that is resolved or closed."""
    now = now or utcnow()
    incident = get(session, ref, for_update=True)
    spec = policy.field_spec(settings, name.strip().lower())
    _require_open(settings, incident, f"change its {spec.name}")
    old = incident.fields.get(spec.name)
    if value is None:
        if spec.required:
            raise DomainError(f"{spec.name} is a required field: give it another value instead")
        if old is None:
            raise DomainError(f"{incident.ref} has no {spec.name} to clear")
        new = None
    else:
        new = policy.check_fields(settings, {spec.name: value}, declaring=False)[spec.name]
        if new == old:
            raise DomainError(f"{incident.ref}'s {spec.name} already is {_shown(new)!r}")
    fields = dict(incident.fields)  # a new dict: the JSON column sees the change
    if new is None:
        fields.pop(spec.name, None)
    else:
        fields[spec.name] = new
    incident.fields = fields
    incident.updated_at = now
    session.add(incident)
    said = (
        f"Cleared {spec.label} (was {_shown(old)})"
        if new is None
        else f"{spec.label}: {_shown(old)} → {_shown(new)}"
    )
    record(
        session,
        incident,
        KIND,
        actor,
        said,
        now=now,
        data={"field": spec.name, "from": old, "to": new},
    )
    return FieldChange(incident, spec.name, spec.label, old, new)
