"""Declaring the incident of an alert group, and what one delivery did (:class:`Outcome`).

The incident is declared from the group's most severe new firing alert, through the incident
service like any other declare, in the delivery's transaction, with an idempotency key made of
the group key and how many incidents the group has declared. Its side effects (channel,
invites, header, announcement, the page of the rule's service by severity policy) are queued
by ``on_declare`` in that same transaction, as for a declare from any other door, so an
incident never exists without them being on their way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from incidentbot import policy
from incidentbot.alerts import records, routing
from incidentbot.alerts.payload import Payload
from incidentbot.alerts.records import GroupRow, Routed
from incidentbot.alerts.timeline import describe
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ledger.redact import redact_text

log = logging.getLogger(__name__)

# Called in the declare's transaction with the settings, the new incident, the actor and the
# rule's service (the web route passes usecases.incidents.declare_effects: what every declare
# queues, the channel, invites, header, announcement and the page by severity policy).
OnDeclare = Callable[[Session, Settings, Incident, str, str | None], None]
# Called in the delivery's transaction when it attached alerts to the group's incident or
# resolved alerts on it (the web route passes alerts.messages.queue: the group's message).
OnAlerts = Callable[[Session, Settings, Incident, GroupRow], object]


@dataclass
class Outcome:
    """What one delivery did, for the HTTP response, the log and the delivery row."""

    delivery_id: int
    alerts: int = 0
    new: int = 0
    repeats: int = 0
    resolved: int = 0
    unmatched: int = 0
    attached: int = 0
    truncated: int = 0
    incident: str | None = None
    declared: bool = False
    error: str | None = None
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.alerts} alert(s): {self.new} new, {self.repeats} repeated"]
        if self.truncated:
            parts.append(f"{self.truncated} more left out by Alertmanager (max_alerts)")
        if self.resolved:
            parts.append(f"{self.resolved} resolved")
        if self.unmatched:
            parts.append(f"{self.unmatched} matched no rule")
        if self.incident:
            verb = "declared" if self.declared else "attached to"
            parts.append(f"{verb} {self.incident} ({self.attached} attached)")
        if self.error:
            parts.append(f"could not declare: {self.error}")
        return "; ".join(parts + self.problems)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_DECLARED = "incidentbot.alerts.declared"


def _declared(session: Session) -> set[int | None]:
    """The incidents declared in the session's current transaction (a new one starts empty)."""
    transaction = session.get_transaction()
    held = session.info.get(_DECLARED)
    if held is None or held[0] is not transaction:
        held = session.info[_DECLARED] = (transaction, set())
    return held[1]  # type: ignore[no-any-return]


def declared_here(session: Session, incident: Incident) -> bool:
    """Whether ``incident`` was declared by this transaction (so nothing else refers to it
    yet: no run, no message, no snooze)."""
    return incident.id is not None and incident.id in _declared(session)


def declare_group(
    session: Session,
    settings: Settings,
    payload: Payload,
    group: GroupRow,
    rows: list[Routed],
    candidates: list[Routed],
    out: Outcome,
    on_declare: OnDeclare | None,
    *,
    now: datetime,
) -> Incident | None:
    """Declare the group's incident from its most severe new firing alert (earliest first).

    A declare the policy refuses (a required incident field no rule fills) leaves the alerts
    recorded with the reason, and is tried again on the group's next delivery."""
    names = settings.severity_names()

    def rank(item: Routed) -> tuple[int, datetime]:
        rule = item[2].rule
        assert rule is not None
        return (names.index(rule.severity or settings.default_severity), item[1].starts_at)

    lead_row, lead, lead_route = min(candidates, key=rank)
    rule = lead_route.rule
    assert rule is not None
    title, problem = routing.title(rule, lead, payload)
    if problem:
        out.problems.append(problem)
    fields: dict[str, str] = {}
    for name, value in routing.fields(rule, lead, payload).items():
        try:
            fields.update(policy.check_fields(settings, {name: value}, declaring=False))
        except DomainError as exc:
            out.problems.append(f"rule {rule.name}: field left out: {exc}")
    starts = [min(row.starts_at, now) for row, _, _ in rows if row.incident_id is None]
    earliest = min(starts)
    firing = len(candidates)
    where = ", ".join(f"{k}={v}" for k, v in sorted(payload.group_labels.items()))
    description = (
        f"Declared by Alertmanager (receiver {payload.receiver or '-'}, rule {rule.name}"
        + (f", service {rule.service}" if rule.service else "")
        + f"): {firing} alert(s) firing"
        + (f" in group {where}" if where else "")
        + "."
    )
    detail = lead.annotations.get("description") or lead.annotations.get("summary")
    if detail:
        description += f"\n{detail}"
    description = redact_text(description)  # joined from redacted parts: masked as a whole
    key = f"alertmanager:{group.key_hash}:{group.incidents_declared + 1}"
    actor = settings.alerts.actor
    try:
        with session.begin_nested():
            incident = svc.declare(
                session,
                settings,
                title=title,
                severity=rule.severity or settings.default_severity,
                actor=actor,
                description=description,
                fields=fields,
                impact_started_at=earliest,
                detected_at=earliest,
                idempotency_key=key,
                now=now,
            )
            if on_declare is not None:
                on_declare(session, settings, incident, actor, rule.service)
    except DomainError as exc:
        reason = str(exc)
        log.error("alert group %s: could not declare: %s", group.key_hash, reason)
        out.error = reason
        records.refused(session, [row for row, _, _ in candidates], reason)
        return None
    group.incidents_declared += 1
    group.incident_id = incident.id
    _declared(session).add(incident.id)
    log.info("alert group %s declared %s: %s", group.key_hash, incident.ref, describe(lead_row))
    return incident
