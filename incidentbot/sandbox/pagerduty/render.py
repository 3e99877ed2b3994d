"""The JSON PagerDuty answers with: references, full objects, log entries, on-calls.

Every object carries ``id``, ``type``, ``summary``, ``self`` (its REST URL on this sandbox, so
``client.rget(obj)`` works) and ``html_url`` (a readable page on this sandbox, standing in for
PagerDuty's web UI). Fields PagerDuty sends as ``null`` are left out where its own API
description does not allow ``null``; everything else is shaped as PagerDuty shapes it.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import datetime
from typing import Any

from incidentbot.sandbox.pagerduty.account import Account
from incidentbot.sandbox.pagerduty.ids import iso
from incidentbot.sandbox.pagerduty.models import (
    Agent,
    EscalationPolicy,
    Incident,
    Integration,
    LogEntry,
    Note,
    Schedule,
    Service,
    User,
)
from incidentbot.sandbox.pagerduty.oncall import OnCall, shifts

# resource type -> (collection in REST paths, collection in web paths)
_PATHS = {
    "user": ("users", "users"),
    "service": ("services", "service-directory"),
    "escalation_policy": ("escalation_policies", "escalation_policies"),
    "schedule": ("schedules", "schedules"),
    "incident": ("incidents", "incidents"),
}


def _ref(account: Account, kind: str, obj_id: str, summary: str) -> dict[str, Any]:
    api, web = _PATHS[kind]
    return {
        "id": obj_id,
        "type": f"{kind}_reference",
        "summary": summary,
        "self": f"{account.api_url}/{api}/{obj_id}",
        "html_url": f"{account.web_url}/{web}/{obj_id}",
    }


def _full(ref: dict[str, Any]) -> dict[str, Any]:
    return {**ref, "type": ref["type"].removesuffix("_reference")}


def user_ref(account: Account, user_id: str) -> dict[str, Any]:
    return _ref(account, "user", user_id, account.users[user_id].name)


def service_ref(account: Account, service_id: str) -> dict[str, Any]:
    return _ref(account, "service", service_id, account.services[service_id].name)


def policy_ref(account: Account, policy_id: str) -> dict[str, Any]:
    return _ref(account, "escalation_policy", policy_id, account.policies[policy_id].name)


def schedule_ref(account: Account, schedule_id: str) -> dict[str, Any]:
    return _ref(account, "schedule", schedule_id, account.schedules[schedule_id].name)


def incident_ref(account: Account, incident: Incident) -> dict[str, Any]:
    return _ref(account, "incident", incident.id, f"[#{incident.number}] {incident.title}")


def agent_ref(account: Account, agent: Agent) -> dict[str, Any]:
    return user_ref(account, agent.id) if agent.kind == "user" else service_ref(account, agent.id)


def user(account: Account, u: User) -> dict[str, Any]:
    return {
        **_full(user_ref(account, u.id)),
        "name": u.name,
        "email": u.email,
        "time_zone": u.time_zone,
        "color": u.color,
        "role": u.role,
        "job_title": u.job_title,
        "avatar_url": f"{account.web_url}/avatars/{u.id}.png",
        "description": "",
        "invitation_sent": False,
        "teams": [],
        "contact_methods": [],
        "notification_rules": [],
    }


def integration_ref(account: Account, i: Integration) -> dict[str, Any]:
    return {
        "id": i.id,
        "type": "events_api_v2_inbound_integration_reference",
        "summary": i.name,
        "self": f"{account.api_url}/services/{i.service_id}/integrations/{i.id}",
        "html_url": f"{account.web_url}/service-directory/{i.service_id}/integrations/{i.id}",
    }


def integration(account: Account, i: Integration) -> dict[str, Any]:
    """The full integration, with the ``integration_key`` events are routed with."""
    return {
        **_full(integration_ref(account, i)),
        "name": i.name,
        "service": service_ref(account, i.service_id),
        "created_at": iso(i.created_at),
        "integration_key": i.key,
    }


def service(account: Account, s: Service, include: Container[str] = frozenset()) -> dict[str, Any]:
    mine = [i for i in account.incidents.values() if i.service_id == s.id]
    status = "active"
    if any(i.status == "acknowledged" for i in mine):
        status = "warning"
    if any(i.status == "triggered" for i in mine):
        status = "critical"
    policy = account.policies[s.escalation_policy_id]
    body: dict[str, Any] = {
        **_full(service_ref(account, s.id)),
        "name": s.name,
        "description": s.description,
        "status": status,
        "created_at": iso(s.created_at),
        "auto_resolve_timeout": s.auto_resolve_timeout,
        "acknowledgement_timeout": s.acknowledgement_timeout,
        "alert_creation": "create_alerts_and_incidents",
        "incident_urgency_rule": {"type": "constant", "urgency": "high"},
        "escalation_policy": (
            escalation_policy(account, policy)
            if "escalation_policies" in include
            else policy_ref(account, policy.id)
        ),
        "teams": [],
        "integrations": [
            integration(account, i) if "integrations" in include else integration_ref(account, i)
            for i in s.integrations
        ],
    }
    if mine:
        body["last_incident_timestamp"] = iso(max(i.created_at for i in mine))
    return body


def escalation_policy(account: Account, p: EscalationPolicy) -> dict[str, Any]:
    services = [s.id for s in account.services.values() if s.escalation_policy_id == p.id]
    return {
        **_full(policy_ref(account, p.id)),
        "name": p.name,
        "description": p.description,
        "num_loops": p.num_loops,
        "on_call_handoff_notifications": "if_has_services",
        "escalation_rules": [
            {
                "id": rule.id,
                "escalation_delay_in_minutes": rule.delay_minutes,
                "targets": [schedule_ref(account, sid) for sid in rule.schedule_ids],
            }
            for rule in p.rules
        ],
        "services": [service_ref(account, sid) for sid in services],
        "teams": [],
    }


def _entries(account: Account, s: Schedule, since: datetime, until: datetime) -> list[dict]:
    return [
        {"user": user_ref(account, sh.user_id), "start": iso(sh.start), "end": iso(sh.end)}
        for sh in shifts(s, since, until)
    ]


def schedule(
    account: Account, s: Schedule, window: tuple[datetime, datetime] | None = None
) -> dict[str, Any]:
    """A schedule; with a ``window`` its layer and final schedule are rendered in it."""
    policies = [
        p.id for p in account.policies.values() if any(s.id in r.schedule_ids for r in p.rules)
    ]
    body: dict[str, Any] = {
        **_full(schedule_ref(account, s.id)),
        "name": s.name,
        "description": s.description,
        "time_zone": "Etc/UTC",
        "escalation_policies": [policy_ref(account, pid) for pid in policies],
        "users": [user_ref(account, uid) for uid in dict.fromkeys(s.users)],
        "teams": [],
    }
    if window is not None:
        entries = _entries(account, s, *window)
        body["schedule_layers"] = [
            {
                "id": s.layer_id,
                "name": "Layer 1",
                "start": iso(s.virtual_start),
                "users": [{"user": user_ref(account, uid)} for uid in s.users],
                "rotation_virtual_start": iso(s.virtual_start),
                "rotation_turn_length_seconds": s.turn_seconds,
                "restrictions": [],
                "rendered_schedule_entries": entries,
                "rendered_coverage_percentage": 100.0,
            }
        ]
        body["final_schedule"] = {
            "name": "Final Schedule",
            "rendered_schedule_entries": entries,
            "rendered_coverage_percentage": 100.0,
        }
        body["overrides_subschedule"] = {
            "name": "Overrides",
            "rendered_schedule_entries": [],
            "rendered_coverage_percentage": 0.0,
        }
    return body


def log_entry_ref(account: Account, incident: Incident, entry: LogEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "type": f"{entry.kind}_log_entry_reference",
        "summary": entry.summary,
        "self": f"{account.api_url}/log_entries/{entry.id}?incident_id={incident.id}",
        "html_url": f"{account.web_url}/incidents/{incident.id}/log_entries/{entry.id}",
    }


def log_entry(account: Account, incident: Incident, entry: LogEntry) -> dict[str, Any]:
    body: dict[str, Any] = {
        **log_entry_ref(account, incident, entry),
        "type": f"{entry.kind}_log_entry",
        "created_at": iso(entry.at),
        "channel": {"type": entry.channel},
        "service": service_ref(account, incident.service_id),
        "incident": incident_ref(account, incident),
        "teams": [],
        "contexts": [],
    }
    if entry.agent is not None:
        body["agent"] = agent_ref(account, entry.agent)
    if entry.kind in ("assign", "escalate"):
        body["assignees"] = [user_ref(account, uid) for uid in entry.assignees]
    if entry.kind == "acknowledge":
        body["acknowledgement_timeout"] = account.services[
            incident.service_id
        ].acknowledgement_timeout
    if entry.kind == "trigger":
        body["event_details"] = {"description": incident.title}
    if entry.note is not None:
        body["note"] = entry.note
    return body


def incident(account: Account, inc: Incident) -> dict[str, Any]:
    body: dict[str, Any] = {
        **_full(incident_ref(account, inc)),
        "incident_number": inc.number,
        "title": inc.title,
        "description": inc.title,
        "created_at": iso(inc.created_at),
        "updated_at": iso(inc.updated_at or inc.created_at),
        "status": inc.status,
        "incident_key": inc.incident_key,
        "service": service_ref(account, inc.service_id),
        "assignments": [
            {"at": iso(a.at), "assignee": user_ref(account, a.user_id)} for a in inc.assignments
        ],
        "assigned_via": inc.assigned_via,
        "last_status_change_at": iso(inc.last_status_change_at or inc.created_at),
        "first_trigger_log_entry": log_entry_ref(account, inc, inc.log[0]),
        "alert_counts": {
            "all": len(inc.alerts),
            "triggered": sum(a.status == "triggered" for a in inc.alerts),
            "resolved": sum(a.status == "resolved" for a in inc.alerts),
        },
        "is_mergeable": True,
        "escalation_policy": policy_ref(account, inc.escalation_policy_id),
        "teams": [],
        "pending_actions": [],
        "acknowledgements": [
            {"at": iso(a.at), "acknowledger": agent_ref(account, a.agent)}
            for a in inc.acknowledgements
        ],
        "incidents_responders": [],
        "responder_requests": [],
        "urgency": inc.urgency,
    }
    if inc.last_status_change_by is not None:
        body["last_status_change_by"] = agent_ref(account, inc.last_status_change_by)
    if inc.resolved_at is not None:
        body["resolved_at"] = iso(inc.resolved_at)
    if inc.details is not None:
        body["body"] = {"type": "incident_body", "details": inc.details}
    return body


def note(account: Account, n: Note) -> dict[str, Any]:
    who = agent_ref(account, n.agent)
    if n.agent.kind == "service":
        who["type"] = "bot_user_reference"
    return {
        "id": n.id,
        "user": who,
        "channel": {"summary": "The PagerDuty website or APIs"},
        "content": n.content,
        "created_at": iso(n.at),
    }


def oncall(account: Account, row: OnCall, include: Container[str] = frozenset()) -> dict[str, Any]:
    who = account.users[row.user_id]
    return {
        "escalation_policy": policy_ref(account, row.escalation_policy_id),
        "escalation_level": row.level,
        "schedule": schedule_ref(account, row.schedule_id),
        "user": user(account, who) if "users" in include else user_ref(account, who.id),
        "start": iso(row.start),
        "end": iso(row.end),
    }
