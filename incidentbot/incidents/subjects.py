"""The incidents are the ledger's subjects: a run's ``incident_id`` is named by its ref."""

from __future__ import annotations

from sqlmodel import Session

from incidentbot.incidents.models import Incident
from incidentbot.ledger import subjects


def describe(session: Session, incident_id: int) -> str | None:
    incident = session.get(Incident, incident_id)
    return incident.ref if incident else None


subjects.install(describe)
