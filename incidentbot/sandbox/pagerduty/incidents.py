"""The incident lifecycle, shared by the REST API, the Events API and simulated responders.

Each function changes one incident the way PagerDuty does, appends its log entries and tells
the account's listeners (the webhook sender) with the v3 event type. Callers hold
``account.lock``. Refusals raise ``PagerDutyError`` with PagerDuty's body.

Rules modelled (PagerDuty's): an incident key is unique among a service's *open* incidents;
acknowledging twice by the same person changes nothing; reassigning or escalating an
acknowledged incident makes it triggered again; acknowledging or re-triggering a resolved
incident reopens it; a resolved incident cannot be resolved, reassigned or escalated again.
"""

from __future__ import annotations

from typing import Any

from incidentbot.sandbox.pagerduty.account import Account
from incidentbot.sandbox.pagerduty.models import (
    DUPLICATE_INCIDENT_KEY,
    Acknowledgement,
    Agent,
    Assignment,
    Incident,
    LogEntry,
    Note,
    Service,
    arguments_error,
    invalid_input,
)
from incidentbot.sandbox.pagerduty.oncall import on_call_users

ALREADY_RESOLVED = "Incident Already Resolved"


def agent_name(account: Account, agent: Agent | None) -> str:
    if agent is None:
        return "PagerDuty"
    if agent.kind == "user":
        return account.users[agent.id].name
    return account.services[agent.id].name


def _log(
    account: Account,
    incident: Incident,
    kind: str,
    agent: Agent | None,
    channel: str,
    summary: str,
    *,
    assignees: list[str] | None = None,
    note: str | None = None,
) -> LogEntry:
    entry = LogEntry(
        account.ids.new("R", 13),
        kind,
        account.now(),
        agent,
        channel,
        summary,
        assignees or [],
        note,
    )
    incident.log.append(entry)
    incident.updated_at = entry.at
    return entry


def _status(account: Account, incident: Incident, status: str, agent: Agent | None) -> None:
    incident.status = status
    incident.last_status_change_at = account.now()
    incident.last_status_change_by = agent
    incident.updated_at = incident.last_status_change_at


def _assign(account: Account, incident: Incident, user_ids: list[str], via: str) -> None:
    now = account.now()
    incident.assignments = [Assignment(uid, now) for uid in user_ids]
    incident.assigned_via = via


def _names(account: Account, user_ids: list[str]) -> str:
    return ", ".join(account.users[uid].name for uid in user_ids) or "nobody"


def create_incident(
    account: Account,
    service: Service,
    title: str,
    agent: Agent | None,
    *,
    incident_key: str | None = None,
    urgency: str = "high",
    details: Any = None,
    policy_id: str | None = None,
    assignees: list[str] | None = None,
    channel: str = "api",
) -> Incident:
    """Open an incident: assigned to ``assignees`` or to the policy's level-1 on-call."""
    if incident_key is not None:
        for other in account.incidents.values():
            if other.open and other.service_id == service.id and other.incident_key == incident_key:
                raise arguments_error(DUPLICATE_INCIDENT_KEY)
    now = account.now()
    incident = Incident(
        id=account.ids.new(),
        number=account.next_number,
        title=title,
        service_id=service.id,
        escalation_policy_id=policy_id or service.escalation_policy_id,
        incident_key=incident_key or account.ids.key(),
        created_at=now,
        created_by=agent,
        urgency=urgency,
        details=details,
        updated_at=now,
        last_status_change_at=now,
        last_status_change_by=agent,
    )
    account.next_number += 1
    account.incidents[incident.id] = incident
    how = {"api": "the API", "website": "the website", "events": "the Events API"}
    _log(account, incident, "trigger", agent, channel, f"Triggered through {how[channel]}.")
    if assignees:
        _assign(account, incident, assignees, "direct_assignment")
    else:
        policy = account.policies[incident.escalation_policy_id]
        _assign(
            account, incident, on_call_users(policy, account.schedules, 1, now), "escalation_policy"
        )
    users = [a.user_id for a in incident.assignments]
    _log(
        account,
        incident,
        "assign",
        agent,
        channel,
        f"Assigned to {_names(account, users)}.",
        assignees=users,
    )
    account.emit("incident.triggered", incident, agent)
    return incident


def acknowledge(account: Account, incident: Incident, agent: Agent, channel: str = "api") -> bool:
    """Acknowledge (reopening a resolved incident first); False when nothing changed."""
    if incident.status == "resolved":
        reopen(account, incident, agent, channel)
    if any(a.agent == agent for a in incident.acknowledgements):
        return False
    incident.acknowledgements.append(Acknowledgement(agent, account.now()))
    _status(account, incident, "acknowledged", agent)
    name = agent_name(account, agent)
    _log(account, incident, "acknowledge", agent, channel, f"Acknowledged by {name}.")
    account.emit("incident.acknowledged", incident, agent)
    return True


def resolve(
    account: Account,
    incident: Incident,
    agent: Agent,
    resolution: str | None = None,
    channel: str = "api",
) -> None:
    if incident.status == "resolved":
        raise arguments_error(ALREADY_RESOLVED)
    _status(account, incident, "resolved", agent)
    incident.resolved_at = incident.last_status_change_at
    incident.assignments = []
    incident.acknowledgements = []
    for alert in incident.alerts:
        alert.status = "resolved"
    name = agent_name(account, agent)
    _log(account, incident, "resolve", agent, channel, f"Resolved by {name}.", note=resolution)
    account.emit("incident.resolved", incident, agent)


def reassign(
    account: Account, incident: Incident, user_ids: list[str], agent: Agent, channel: str = "api"
) -> None:
    """Direct assignment to ``user_ids``; an acknowledged incident becomes triggered again."""
    if incident.status == "resolved":
        raise arguments_error(ALREADY_RESOLVED)
    if not user_ids:
        raise invalid_input("Assignments must not be empty")
    _assign(account, incident, list(dict.fromkeys(user_ids)), "direct_assignment")
    if incident.status == "acknowledged":
        incident.acknowledgements = []
        _status(account, incident, "triggered", agent)
    users = [a.user_id for a in incident.assignments]
    _log(
        account,
        incident,
        "assign",
        agent,
        channel,
        f"Reassigned to {_names(account, users)}.",
        assignees=users,
    )
    account.emit("incident.reassigned", incident, agent)


def escalate(
    account: Account,
    incident: Incident,
    level: int | None,
    agent: Agent | None,
    channel: str = "api",
) -> None:
    """Escalate to ``level`` (the next level when ``None``, looping like ``num_loops``)."""
    if incident.status == "resolved":
        raise arguments_error(ALREADY_RESOLVED)
    policy = account.policies[incident.escalation_policy_id]
    target = level if level is not None else incident.escalation_level % len(policy.rules) + 1
    if not 1 <= target <= len(policy.rules):
        raise invalid_input(
            f"Escalation level {target} is not valid for an escalation policy with "
            f"{len(policy.rules)} rules"
        )
    users = on_call_users(policy, account.schedules, target, account.now())
    incident.escalation_level = target
    _assign(account, incident, users, "escalation_policy")
    if incident.status == "acknowledged":
        incident.acknowledgements = []
        _status(account, incident, "triggered", agent)
    summary = f"Escalated to level {target}: {_names(account, users)}."
    _log(account, incident, "escalate", agent, channel, summary, assignees=users)
    account.emit("incident.escalated", incident, agent)


def reopen(account: Account, incident: Incident, agent: Agent | None, channel: str = "api") -> None:
    """A resolved incident triggered again, assigned through its policy from level 1."""
    policy = account.policies[incident.escalation_policy_id]
    users = on_call_users(policy, account.schedules, 1, account.now())
    incident.resolved_at = None
    incident.escalation_level = 1
    _assign(account, incident, users, "escalation_policy")
    _status(account, incident, "triggered", agent)
    _log(
        account,
        incident,
        "assign",
        agent,
        channel,
        f"Reopened; assigned to {_names(account, users)}.",
        assignees=users,
    )
    account.emit("incident.reopened", incident, agent)


def add_note(account: Account, incident: Incident, agent: Agent, content: str) -> Note:
    if not content.strip():
        raise invalid_input("Note content must not be blank")
    note = Note(account.ids.new(), agent, content, account.now())
    incident.notes.append(note)
    _log(
        account,
        incident,
        "annotate",
        agent,
        "note",
        f"Note added by {agent_name(account, agent)}.",
        note=content,
    )
    account.emit("incident.annotated", incident, agent, note=note)
    return note
