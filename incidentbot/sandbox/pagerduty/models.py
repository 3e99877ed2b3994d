"""The account's objects (users, services, schedules, incidents, ...) and PagerDuty's errors.

Plain dataclasses hold the state; ``render`` turns them into the JSON PagerDuty answers with.
Errors are exceptions carrying PagerDuty's error body, so a handler deep in the incident logic
can refuse a request exactly as PagerDuty would (status, ``message``, numeric ``code``,
``errors``) without knowing about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

OPEN_STATUSES = ("triggered", "acknowledged")
STATUSES = ("triggered", "acknowledged", "resolved")
AgentKind = Literal["user", "service"]


class PagerDutyError(Exception):
    """A REST API refusal: HTTP ``status`` and the ``{"error": {...}}`` body PagerDuty sends."""

    def __init__(
        self, status: int, message: str, code: int | None = None, errors: list[str] | None = None
    ) -> None:
        super().__init__(f"{status} {message}: {errors or ''}")
        self.status = status
        self.message = message
        self.code = code
        self.errors = list(errors or [])

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.errors:
            error["errors"] = self.errors
        return {"error": error}


# The error bodies PagerDuty answers with. Codes and messages are PagerDuty's own, as its
# documentation and its API's answers (quoted in public bug reports) give them.
def not_found() -> PagerDutyError:
    return PagerDutyError(404, "Not Found", 2100)


def invalid_input(*errors: str) -> PagerDutyError:
    return PagerDutyError(400, "Invalid Input Provided", 2001, list(errors))


def arguments_error(*errors: str) -> PagerDutyError:
    return PagerDutyError(400, "Arguments Caused Error", 2002, list(errors))


def authentication_failed() -> PagerDutyError:
    return PagerDutyError(401, "Authentication failed", 2006)


def from_header_missing() -> PagerDutyError:
    return PagerDutyError(
        400,
        'You must specify a user\'s email address in the "From" header to perform this action',
        2016,
    )


def from_header_malformed() -> PagerDutyError:
    return PagerDutyError(400, 'Malformed "From" header', 1028)


def requester_not_found() -> PagerDutyError:
    return PagerDutyError(400, "Requester User Not Found", 1008)


DUPLICATE_INCIDENT_KEY = "Open incident with matching dedup key already exists on this service"


class EventRejected(Exception):
    """An Events API v2 refusal: HTTP 400 ``{"status": "invalid event", ...}``."""

    def __init__(self, *errors: str) -> None:
        super().__init__("; ".join(errors))
        self.errors = list(errors)

    def body(self) -> dict[str, Any]:
        return {
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": self.errors,
        }


@dataclass
class User:
    id: str
    handle: str  # the short name people type (``bob``), the Slack sandbox's user name
    name: str
    email: str
    role: str
    job_title: str
    color: str
    time_zone: str = "Etc/UTC"


@dataclass
class Integration:
    """An Events API v2 integration: its ``key`` is the routing key events are sent with."""

    id: str
    key: str
    name: str
    service_id: str
    created_at: datetime


@dataclass
class Service:
    id: str
    name: str
    description: str
    escalation_policy_id: str
    created_at: datetime
    integrations: list[Integration] = field(default_factory=list)
    acknowledgement_timeout: int = 1800
    auto_resolve_timeout: int = 14400


@dataclass
class Schedule:
    """One schedule with one rotation layer: ``users`` take turns of ``turn_seconds``."""

    id: str
    name: str
    description: str
    users: list[str]
    virtual_start: datetime
    turn_seconds: int
    layer_id: str


@dataclass
class EscalationRule:
    id: str
    delay_minutes: int
    schedule_ids: list[str]


@dataclass
class EscalationPolicy:
    id: str
    name: str
    description: str
    rules: list[EscalationRule]
    num_loops: int = 0


@dataclass(frozen=True)
class Agent:
    """Who did something: a user (through the API, a person) or a service (its events)."""

    kind: AgentKind
    id: str


@dataclass
class LogEntry:
    id: str
    kind: str  # trigger, assign, acknowledge, escalate, resolve, annotate
    at: datetime
    agent: Agent | None
    channel: str
    summary: str
    assignees: list[str] = field(default_factory=list)
    note: str | None = None


@dataclass
class Note:
    id: str
    agent: Agent
    content: str
    at: datetime


@dataclass
class Assignment:
    user_id: str
    at: datetime


@dataclass
class Acknowledgement:
    agent: Agent
    at: datetime


@dataclass
class Alert:
    """One Events API trigger grouped into an incident (PagerDuty's alerts)."""

    id: str
    dedup_key: str
    summary: str
    source: str
    severity: str
    at: datetime
    status: str = "triggered"
    custom_details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Incident:
    id: str
    number: int
    title: str
    service_id: str
    escalation_policy_id: str
    incident_key: str
    created_at: datetime
    created_by: Agent | None
    urgency: str = "high"
    status: str = "triggered"
    details: Any = None
    updated_at: datetime | None = None
    last_status_change_at: datetime | None = None
    last_status_change_by: Agent | None = None
    assignments: list[Assignment] = field(default_factory=list)
    assigned_via: str = "escalation_policy"
    acknowledgements: list[Acknowledgement] = field(default_factory=list)
    escalation_level: int = 1
    resolved_at: datetime | None = None
    log: list[LogEntry] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass
class ChangeEvent:
    id: str
    service_id: str
    summary: str
    source: str | None
    timestamp: str | None
    received_at: datetime
    custom_details: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
