"""Use cases of an incident's alerts: snoozing an alert group."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from incidentbot import db
from incidentbot.alerts import messages, snooze
from incidentbot.clock import utcnow
from incidentbot.incidents import service as svc
from incidentbot.usecases.core import Actor, Core


@dataclass(frozen=True)
class Snoozed:
    ref: str
    group: str  # "group 3 {alertname=RpcEndpointDown}"
    until: datetime | None  # None: the snooze ended


def snooze_group(core: Core, actor: Actor, ref: str, group_id: int, length: timedelta) -> Snoozed:
    """Snooze one of the incident's alert groups for ``length`` (zero ends the snooze): its
    channel message stops updating and it declares no new incident until then. The message
    shows the snooze (one last update), and the snooze is on the timeline."""
    now = utcnow()
    with db.transaction(core.engine) as s:
        incident = svc.get(s, ref)
        group, until = snooze.snooze(s, incident, group_id, length, actor=actor.id, now=now)
        if core.chat:
            messages.queue(s, core.settings, incident, group, force=True)
        return Snoozed(incident.ref, snooze.group_label(group), until)
