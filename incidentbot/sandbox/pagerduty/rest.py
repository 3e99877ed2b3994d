"""REST API v2 endpoints: the directory (services, users, policies, schedules, on-calls) and
incidents (create, list, show, update, notes, log entries).

Lists use PagerDuty's classic pagination: ``limit`` (default 25, at most 100), ``offset``,
``more``, and ``total`` (``null`` unless ``total=true``); ``offset + limit`` beyond 10,000 is
refused, as the ``pagerduty`` client's ``iter_all`` expects. Writes need the acting user: a
user-level token's owner, or with the account token the ``From`` header's email.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from incidentbot.sandbox.pagerduty import incidents as lifecycle
from incidentbot.sandbox.pagerduty import render
from incidentbot.sandbox.pagerduty.api import REST, Call, Endpoint, Reply
from incidentbot.sandbox.pagerduty.models import (
    STATUSES,
    Incident,
    arguments_error,
    invalid_input,
    not_found,
)
from incidentbot.sandbox.pagerduty.oncall import compute_oncalls

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
ITERATION_LIMIT = 10_000
ONCALL_HORIZON = timedelta(days=90)
INCIDENT_WINDOW = timedelta(days=30)
SCHEDULE_WINDOW = timedelta(days=14)


def paginate(call: Call, key: str, items: list[Any]) -> Reply:
    limit = call.integer("limit", DEFAULT_LIMIT)
    offset = call.integer("offset", 0)
    if limit < 1 or offset < 0:
        raise invalid_input("limit must be positive and offset must not be negative")
    limit = min(limit, MAX_LIMIT)
    if offset + limit > ITERATION_LIMIT:
        raise invalid_input(f"Offset plus limit must not exceed {ITERATION_LIMIT}")
    page = items[offset : offset + limit]
    body = {
        key: page,
        "limit": limit,
        "offset": offset,
        "more": offset + len(page) < len(items),
        "total": len(items) if call.flag("total") else None,
    }
    return Reply(200, body)


def _matches(query: str | None, *fields: str) -> bool:
    return not query or any(query.lower() in f.lower() for f in fields)


# -- directory ------------------------------------------------------------------------------


def list_services(call: Call) -> Reply:
    acct, query = call.account, call.query.get("query")
    include = set(call.values("include"))
    name = call.query.get("name")
    found = [
        s
        for s in sorted(acct.services.values(), key=lambda s: s.name)
        if _matches(query, s.name) and (name is None or s.name == name)
    ]
    return paginate(call, "services", [render.service(acct, s, include) for s in found])


def get_service(call: Call) -> Reply:
    service = call.account.services.get(call.path_params["id"])
    if service is None:
        raise not_found()
    include = set(call.values("include"))
    return Reply(200, {"service": render.service(call.account, service, include)})


def list_users(call: Call) -> Reply:
    acct, query = call.account, call.query.get("query")
    found = [
        u
        for u in sorted(acct.users.values(), key=lambda u: u.name)
        if _matches(query, u.name, u.email)
    ]
    return paginate(call, "users", [render.user(acct, u) for u in found])


def get_user(call: Call) -> Reply:
    user = call.account.users.get(call.path_params["id"])
    if user is None:
        raise not_found()
    return Reply(200, {"user": render.user(call.account, user)})


def list_escalation_policies(call: Call) -> Reply:
    acct, query = call.account, call.query.get("query")
    user_ids = set(call.values("user_ids"))
    found = []
    for policy in sorted(acct.policies.values(), key=lambda p: p.name):
        reached = {u for r in policy.rules for s in r.schedule_ids for u in acct.schedules[s].users}
        if _matches(query, policy.name) and (not user_ids or reached & user_ids):
            found.append(render.escalation_policy(acct, policy))
    return paginate(call, "escalation_policies", found)


def list_schedules(call: Call) -> Reply:
    acct, query = call.account, call.query.get("query")
    found = [
        render.schedule(acct, s)
        for s in sorted(acct.schedules.values(), key=lambda s: s.name)
        if _matches(query, s.name)
    ]
    return paginate(call, "schedules", found)


def get_schedule(call: Call) -> Reply:
    acct = call.account
    schedule = acct.schedules.get(call.path_params["id"])
    if schedule is None:
        raise not_found()
    since = call.time("since") or acct.now()
    until = call.time("until") or since + SCHEDULE_WINDOW
    if until < since:
        raise invalid_input("until must not be before since")
    return Reply(200, {"schedule": render.schedule(acct, schedule, (since, until))})


def list_oncalls(call: Call) -> Reply:
    """On-calls overlapping ``[since, until]`` (both default to now), at most 90 days ahead."""
    acct = call.account
    now = acct.now()
    since = call.time("since") or now
    until = call.time("until") or since
    if until < since:
        raise invalid_input("until must not be before since")
    if until > now + ONCALL_HORIZON:
        raise invalid_input("On-call queries are limited to 90 days in the future")
    policy_ids = set(call.values("escalation_policy_ids"))
    schedule_ids = set(call.values("schedule_ids")) or None
    user_ids = set(call.values("user_ids")) or None
    policies = [p for p in acct.policies.values() if not policy_ids or p.id in policy_ids]
    rows = compute_oncalls(
        policies,
        acct.schedules,
        since=since,
        until=until,
        schedule_ids=schedule_ids,
        user_ids=user_ids,
        earliest=call.flag("earliest"),
    )
    include = set(call.values("include"))
    return paginate(call, "oncalls", [render.oncall(acct, r, include) for r in rows])


# -- incidents ------------------------------------------------------------------------------


def _wrapped(call: Call, key: str) -> dict[str, Any]:
    body = call.body
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise invalid_input(f"{key} is required and must be an object")
    return body[key]


def _assignees(call: Call, data: dict[str, Any]) -> list[str]:
    found = []
    for item in data.get("assignments") or []:
        ref = item.get("assignee") if isinstance(item, dict) else None
        user = call.account.users.get(ref.get("id", "")) if isinstance(ref, dict) else None
        if user is None:
            raise invalid_input("Assignee not found")
        found.append(user.id)
    return found


def _incident(call: Call) -> Incident:
    try:
        return call.account.incident(call.path_params["id"])
    except KeyError:
        raise not_found() from None


def create_incident(call: Call) -> Reply:
    acct = call.account
    agent = call.agent()
    data = _wrapped(call, "incident")
    if data.get("type") != "incident":
        raise invalid_input("Incident type must be 'incident'")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise invalid_input("Title cannot be empty")
    service_ref = data.get("service")
    service = (
        acct.services.get(service_ref.get("id", "")) if isinstance(service_ref, dict) else None
    )
    if service is None:
        raise invalid_input("Service not found")
    urgency = data.get("urgency", "high")
    if urgency not in ("high", "low"):
        raise invalid_input("Urgency must be high or low")
    policy_id = None
    if isinstance(data.get("escalation_policy"), dict):
        policy_id = data["escalation_policy"].get("id")
        if policy_id not in acct.policies:
            raise invalid_input("Escalation policy not found")
    assignees = _assignees(call, data)
    if assignees and policy_id:
        raise invalid_input("Assignments cannot be specified along with an escalation policy")
    key = data.get("incident_key")
    body = data.get("body") if isinstance(data.get("body"), dict) else {}
    incident = lifecycle.create_incident(
        acct,
        service,
        title.strip(),
        agent,
        incident_key=str(key) if key is not None else None,
        urgency=urgency,
        details=body.get("details"),
        policy_id=policy_id,
        assignees=assignees or None,
    )
    return Reply(201, {"incident": render.incident(acct, incident)})


def list_incidents(call: Call) -> Reply:
    acct = call.account
    statuses = set(call.values("statuses"))
    if statuses - set(STATUSES):
        raise invalid_input("Status must be a list of triggered, acknowledged, or resolved.")
    services, users = set(call.values("service_ids")), set(call.values("user_ids"))
    urgencies, key = set(call.values("urgencies")), call.query.get("incident_key")
    until = call.time("until") or acct.now()
    since = call.time("since") or until - INCIDENT_WINDOW
    everything = call.query.get("date_range") == "all"
    found = []
    for inc in sorted(acct.incidents.values(), key=lambda i: i.number):
        if (
            (not statuses or inc.status in statuses)
            and (not services or inc.service_id in services)
            and (not urgencies or inc.urgency in urgencies)
            and (key is None or inc.incident_key == key)
            and (not users or users & {a.user_id for a in inc.assignments})
            and (everything or since <= inc.created_at <= until)
        ):
            found.append(render.incident(acct, inc))
    return paginate(call, "incidents", found)


def get_incident(call: Call) -> Reply:
    return Reply(200, {"incident": render.incident(call.account, _incident(call))})


def update_incident(call: Call) -> Reply:
    """Acknowledge, resolve, reassign, escalate, retitle: what one PUT asks, in that order."""
    acct, incident = call.account, _incident(call)
    agent = call.agent()
    data = _wrapped(call, "incident")
    if data.get("type") not in ("incident", "incident_reference"):
        raise invalid_input("Incident type must be 'incident' or 'incident_reference'")
    status = data.get("status")
    if status is not None and status not in STATUSES:
        raise invalid_input("Status must be triggered, acknowledged, or resolved.")
    urgency = data.get("urgency")
    if urgency is not None and urgency not in ("high", "low"):
        raise invalid_input("Urgency must be high or low")
    assignees = _assignees(call, data)
    level = data.get("escalation_level")
    if level is not None:
        rules = len(acct.policies[incident.escalation_policy_id].rules)
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= rules:
            raise invalid_input(f"Escalation level must be an integer from 1 to {rules}")
    if incident.status == "resolved" and (assignees or level is not None or status == "resolved"):
        raise arguments_error(lifecycle.ALREADY_RESOLVED)
    # Everything is checked: apply it all, so a refused PUT changes nothing.
    if isinstance(data.get("title"), str) and data["title"].strip():
        incident.title = data["title"].strip()
    if urgency is not None:
        incident.urgency = urgency
    if assignees:
        lifecycle.reassign(acct, incident, assignees, agent)
    if level is not None:
        lifecycle.escalate(acct, incident, level, agent)
    if status == "acknowledged":
        lifecycle.acknowledge(acct, incident, agent)
    elif status == "resolved":
        lifecycle.resolve(acct, incident, agent, data.get("resolution"))
    elif status == "triggered" and incident.status == "resolved":
        lifecycle.reopen(acct, incident, agent)
    incident.updated_at = acct.now()
    return Reply(200, {"incident": render.incident(acct, incident)})


def create_note(call: Call) -> Reply:
    acct, incident = call.account, _incident(call)
    agent = call.agent()
    content = _wrapped(call, "note").get("content")
    if not isinstance(content, str):
        raise invalid_input("Note content is required")
    note = lifecycle.add_note(acct, incident, agent, content)
    return Reply(200, {"note": render.note(acct, note)})


def list_notes(call: Call) -> Reply:
    acct, incident = call.account, _incident(call)
    return Reply(200, {"notes": [render.note(acct, n) for n in incident.notes]})


def list_log_entries(call: Call) -> Reply:
    acct, incident = call.account, _incident(call)
    entries = [render.log_entry(acct, incident, e) for e in incident.log]
    return paginate(call, "log_entries", entries)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(REST, "GET", "/services", list_services),
    Endpoint(REST, "GET", "/services/{id}", get_service),
    Endpoint(REST, "GET", "/users", list_users),
    Endpoint(REST, "GET", "/users/{id}", get_user),
    Endpoint(REST, "GET", "/escalation_policies", list_escalation_policies),
    Endpoint(REST, "GET", "/schedules", list_schedules),
    Endpoint(REST, "GET", "/schedules/{id}", get_schedule),
    Endpoint(REST, "GET", "/oncalls", list_oncalls),
    Endpoint(REST, "GET", "/incidents", list_incidents),
    Endpoint(REST, "POST", "/incidents", create_incident),
    Endpoint(REST, "GET", "/incidents/{id}", get_incident),
    Endpoint(REST, "PUT", "/incidents/{id}", update_incident),
    Endpoint(REST, "GET", "/incidents/{id}/notes", list_notes),
    Endpoint(REST, "POST", "/incidents/{id}/notes", create_note),
    Endpoint(REST, "GET", "/incidents/{id}/log_entries", list_log_entries),
)
