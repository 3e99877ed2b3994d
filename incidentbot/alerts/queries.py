"""Reading what alerts came in: for ``incidentbot alerts``, ``/incident alerts`` and paging.

Plain functions over a session, like the incident service. Unmatched alerts (no routing rule
matched them) are first-class here: they never open an incident, so this is where people see
them and decide whether a rule is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from incidentbot.alerts.models import AlertDelivery, AlertRecord
from incidentbot.alerts.timeline import describe
from incidentbot.errors import DomainError, NotFound
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident

MAX_LIMIT = 1000


@dataclass(frozen=True)
class AlertView:
    """An alert with the reference of its incident (None: not attached to one)."""

    alert: AlertRecord
    incident_ref: str | None

    @property
    def unmatched(self) -> bool:
        return self.alert.rule is None

    def line(self) -> str:
        """One line for chat and logs: status, what, where it went."""
        a = self.alert
        where = self.incident_ref or ("no rule matched" if self.unmatched else "no incident")
        if a.error and not self.incident_ref:
            where = f"not declared: {a.error}"
        repeats = f", received {a.received_count}×" if a.received_count > 1 else ""
        since = a.starts_at.strftime("%Y-%m-%d %H:%M UTC")
        return f"[{a.status}] {describe(a)} (since {since}{repeats}) → {where}"


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise DomainError(f"limit {limit} is out of range: use 1 to {MAX_LIMIT}")
    return limit


def list_alerts(
    session: Session,
    *,
    unmatched: bool = False,
    status: str | None = None,
    incident: str | int | None = None,
    limit: int = 50,
) -> list[AlertView]:
    """Alerts, most recently received first. ``unmatched``: only those no rule matched."""
    stmt = (
        select(AlertRecord, Incident.number)
        .join(Incident, col(Incident.id) == col(AlertRecord.incident_id), isouter=True)
        .order_by(col(AlertRecord.last_received_at).desc(), col(AlertRecord.id).desc())
        .limit(_check_limit(limit))
    )
    if unmatched:
        stmt = stmt.where(col(AlertRecord.rule).is_(None))
    if status is not None:
        if status not in ("firing", "resolved"):
            raise DomainError(f"unknown alert status {status!r}: allowed are firing, resolved")
        stmt = stmt.where(AlertRecord.status == status)
    if incident is not None:
        inc = svc.get(session, incident)
        stmt = stmt.where(AlertRecord.incident_id == inc.id)
    return [
        AlertView(alert, f"INC-{number}" if number is not None else None)
        for alert, number in session.exec(stmt)
    ]


def get_alert(session: Session, alert_id: int) -> AlertView:
    alert = session.get(AlertRecord, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}")
    incident = session.get(Incident, alert.incident_id) if alert.incident_id else None
    return AlertView(alert, incident.ref if incident else None)


def list_deliveries(
    session: Session, *, failed: bool = False, limit: int = 20
) -> list[AlertDelivery]:
    """Webhook deliveries as received, newest first (``failed``: only those not processed)."""
    stmt = select(AlertDelivery).order_by(col(AlertDelivery.id).desc()).limit(_check_limit(limit))
    if failed:
        stmt = stmt.where(col(AlertDelivery.failed).is_(True))
    return list(session.exec(stmt))


def incident_service(session: Session, incident: Incident) -> str | None:
    """The service the routing rules gave the incident's alerts (the earliest one that has
    one): what paging needs to know whom to page for an alert-declared incident."""
    stmt = (
        select(AlertRecord.service)
        .where(AlertRecord.incident_id == incident.id, col(AlertRecord.service).is_not(None))
        .order_by(col(AlertRecord.starts_at), col(AlertRecord.id))
        .limit(1)
    )
    return session.exec(stmt).first()
