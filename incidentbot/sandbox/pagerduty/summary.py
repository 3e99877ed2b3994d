"""A readable account of what happened in the sandbox: incidents, their log, webhooks sent.

What a person would see scrolling PagerDuty's incident page, as text: for tests that fail (the
summary says what the bot did), for the demo, and at ``GET /_sandbox/summary``.
"""

from __future__ import annotations

from collections.abc import Iterable

from incidentbot.sandbox.pagerduty.account import Account
from incidentbot.sandbox.pagerduty.incidents import agent_name
from incidentbot.sandbox.pagerduty.models import Incident
from incidentbot.sandbox.pagerduty.webhooks import Delivery


def _delivery(d: Delivery) -> str:
    if not d.attempts:
        return f"{d.event_type} (pending)"
    codes = ",".join(str(a.status) if a.status is not None else "error" for a in d.attempts)
    mark = "delivered" if d.delivered else "failed"
    forged = " forged" if d.forged else ""
    return f"{d.event_type} {mark}{forged} [{codes}]"


def incident_text(account: Account, incident: Incident, deliveries: Iterable[Delivery] = ()) -> str:
    """One incident: header line, details, log entries, notes' text, webhooks."""
    service = account.services[incident.service_id].name
    policy = account.policies[incident.escalation_policy_id].name
    assigned = ", ".join(account.users[a.user_id].name for a in incident.assignments) or "nobody"
    lines = [
        f"#{incident.number} {incident.id}  {incident.status}  {incident.urgency}  {service}  "
        f'"{incident.title}"',
        f"   key {incident.incident_key} · {policy} (level {incident.escalation_level}) · "
        f"assigned {assigned} · alerts {len(incident.alerts)}",
    ]
    for entry in incident.log:
        who = f" ({agent_name(account, entry.agent)})" if entry.kind == "trigger" else ""
        note = f' "{entry.note}"' if entry.note else ""
        lines.append(f"   {entry.at:%H:%M:%S}  {entry.kind:<11}  {entry.summary}{who}{note}")
    sent = [_delivery(d) for d in deliveries if d.incident_id == incident.id]
    if sent:
        lines.append("   webhooks: " + "; ".join(sent))
    return "\n".join(lines)


def render_summary(account: Account, deliveries: Iterable[Delivery] = ()) -> str:
    """Every incident (oldest first) and every change event, as text."""
    sent = list(deliveries)
    with account.lock:
        incidents = sorted(account.incidents.values(), key=lambda i: i.number)
        parts = [f"PagerDuty sandbox: {len(incidents)} incident(s)"]
        parts += [incident_text(account, inc, sent) for inc in incidents]
        if account.change_events:
            changes = ["Change events:"]
            for change in account.change_events:
                service = account.services[change.service_id].name
                source = f" ({change.source})" if change.source else ""
                changes.append(
                    f"   {change.received_at:%H:%M:%S}  {service}  {change.summary}{source}"
                )
            parts.append("\n".join(changes))
    return "\n\n".join(parts)
