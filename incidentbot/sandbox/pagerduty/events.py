"""Events API v2: ``POST /v2/enqueue`` and ``POST /v2/change/enqueue``.

An event names its service by ``routing_key`` (a service integration's key). ``dedup_key``
semantics are PagerDuty's: a trigger whose key matches an *open* incident on that service adds
an alert to it instead of opening another (without a key, one is generated and returned);
acknowledge and resolve need the key and act on that open incident, and are accepted (202)
even when no open incident matches, since the Events API is asynchronous and only validates
the event. Incidents opened here are the same ones the REST API lists.
"""

from __future__ import annotations

from typing import Any

from incidentbot.sandbox.pagerduty import incidents as lifecycle
from incidentbot.sandbox.pagerduty.account import Account
from incidentbot.sandbox.pagerduty.api import EVENTS, Call, Endpoint, Reply
from incidentbot.sandbox.pagerduty.models import (
    Agent,
    Alert,
    ChangeEvent,
    EventRejected,
    Incident,
    Service,
)

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
ROUTING_KEY_LENGTH = 32
DEDUP_KEY_MAX = 255
SUMMARY_MAX = 1024


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def _service(call: Call, body: dict[str, Any], errors: list[str]) -> Service | None:
    key = body.get("routing_key")
    if _blank(key):
        errors.append("'routing_key' is missing or blank")
        return None
    if len(key) != ROUTING_KEY_LENGTH:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
        return None
    service = call.account.service_for_key(key)
    if service is None:
        errors.append("Invalid routing key")
    return service


def _object(call: Call) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise EventRejected("Event object must be a JSON object")
    return call.body


def _open_incident(acct: Account, service: Service, dedup_key: str) -> Incident | None:
    for incident in acct.incidents.values():
        if (
            incident.open
            and incident.service_id == service.id
            and incident.incident_key == dedup_key
        ):
            return incident
    return None


def _check_trigger(payload: Any, errors: list[str]) -> None:
    if not isinstance(payload, dict):
        errors.append("'payload' is missing or blank")
        return
    for name in ("summary", "source"):
        if _blank(payload.get(name)):
            errors.append(f"'payload.{name}' is missing or blank")
    if payload.get("severity") not in SEVERITIES:
        errors.append(
            "'payload.severity' is invalid (must be one of critical, error, warning, info)"
        )


def enqueue(call: Call) -> Reply:
    body = _object(call)
    errors: list[str] = []
    service = _service(call, body, errors)
    action = body.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup_key = body.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > DEDUP_KEY_MAX):
        errors.append(f"'dedup_key' must be a string of at most {DEDUP_KEY_MAX} characters")
    if action in ("acknowledge", "resolve") and _blank(dedup_key):
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        _check_trigger(body.get("payload"), errors)
    if errors or service is None:
        raise EventRejected(*errors)
    key = apply_event(call.account, service, action, dedup_key, body.get("payload"))
    return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": key})


def apply_event(
    acct: Account, service: Service, action: str, dedup_key: str | None, payload: Any = None
) -> str:
    """Apply a validated event to ``service``; returns its dedup key (generated if absent).

    Callers hold ``acct.lock``. Also used by ``PagerDutySandbox.trigger_alert`` to play a
    monitoring tool.
    """
    agent = Agent("service", service.id)
    key = dedup_key or acct.ids.key()
    incident = _open_incident(acct, service, key)
    if action == "trigger":
        alert = Alert(
            acct.ids.new(),
            key,
            payload["summary"][:SUMMARY_MAX],
            payload["source"],
            payload["severity"],
            acct.now(),
            custom_details=dict(payload.get("custom_details") or {}),
        )
        if incident is None:
            urgency = "high" if alert.severity in ("critical", "error") else "low"
            incident = lifecycle.create_incident(
                acct,
                service,
                alert.summary,
                agent,
                incident_key=key,
                urgency=urgency,
                details=alert.custom_details or None,
                channel="events",
            )
        incident.alerts.append(alert)
        incident.updated_at = alert.at
    elif incident is not None and action == "acknowledge":
        lifecycle.acknowledge(acct, incident, agent)
    elif incident is not None and action == "resolve":
        lifecycle.resolve(acct, incident, agent)
    return key


def change_enqueue(call: Call) -> Reply:
    body = _object(call)
    errors: list[str] = []
    service = _service(call, body, errors)
    payload = body.get("payload")
    if not isinstance(payload, dict) or _blank(payload.get("summary")):
        errors.append("'payload.summary' is missing or blank")
    if errors or service is None or not isinstance(payload, dict):
        raise EventRejected(*errors)
    acct = call.account
    acct.change_events.append(
        ChangeEvent(
            acct.ids.new(),
            service.id,
            payload["summary"][:SUMMARY_MAX],
            payload.get("source"),
            payload.get("timestamp"),
            acct.now(),
            dict(payload.get("custom_details") or {}),
            list(body.get("links") or []),
        )
    )
    return Reply(202, {"status": "success", "message": "Change event processed"})


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(EVENTS, "POST", "/v2/enqueue", enqueue),
    Endpoint(EVENTS, "POST", "/v2/change/enqueue", change_enqueue),
)
