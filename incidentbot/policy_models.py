"""The policy part of the settings: severities, statuses, roles, fields, channels, Slack.

Each is a strict, frozen pydantic model with the defaults a new team starts from. They are
re-exported by :mod:`incidentbot.config`, where they are assembled into ``Settings``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from incidentbot.durations import parse_duration

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda d: f"{int(d.total_seconds())}s", return_type=str),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Severity(_Strict):
    name: str = Field(description="SEV1 (worst) .. SEV4")
    label: str
    description: str = ""
    page: bool = False
    cadence: Duration = Field(description="how often the channel expects a status update")
    postmortem_required: bool = False

    @field_validator("name")
    @classmethod
    def _sev_name(cls, value: str) -> str:
        if not re.fullmatch(r"SEV[0-9]", value):
            raise ValueError(
                f"{value!r} is not a severity name: use SEV followed by a digit, e.g. SEV1"
            )
        return value

    @field_validator("cadence")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero, e.g. 30m")
        return value


class Status(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z_]*$")
    label: str
    description: str = ""
    terminal: bool = False


class Role(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z_]*$")
    label: str
    description: str


class FieldSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z_]*$")
    label: str
    allowed: list[str] | None = None
    required: bool = False


_PLACEHOLDERS = {"number", "slug", "severity", "date"}
_SLACK_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")


class Channels(_Strict):
    naming: str = "inc-{number}-{slug}"
    digest: str = "incidents"
    standby: bool = Field(
        default=False,
        description="keep a public and a private channel ready for the next incident "
        "(renamed when one takes it): the declare's header is out one Slack round trip sooner",
    )
    archive_after: Duration | None = Field(
        default=None, description="archive an incident's channel this long after it closes"
    )
    archive_warning: Duration | None = Field(
        default=None, description="warn in the channel this long before archiving it"
    )

    @model_validator(mode="after")
    def _archive(self) -> Channels:
        after, warning = self.archive_after, self.archive_warning
        if after is not None and after <= timedelta(0):
            raise ValueError("archive_after must be a positive duration such as 7d")
        if warning is not None:
            if after is None:
                raise ValueError("archive_warning needs archive_after (when to archive)")
            if not timedelta(0) < warning < after:
                raise ValueError("archive_warning must be positive and shorter than archive_after")
        return self

    @field_validator("naming")
    @classmethod
    def _naming(cls, value: str) -> str:
        used = set(re.findall(r"{([^{}]*)}", value))
        unknown = used - _PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{sorted(unknown)[0]}}}: "
                f"allowed are {', '.join('{' + p + '}' for p in sorted(_PLACEHOLDERS))}"
            )
        if "number" not in used:
            raise ValueError("must contain {number} so that every incident gets its own channel")
        static = re.sub(r"{[^{}]*}", "", value)
        if static and not _SLACK_NAME.match(static):
            raise ValueError(
                f"{value!r} has characters Slack refuses in channel names: "
                "use lower case letters, digits, '-' and '_'"
            )
        return value

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str) -> str:
        value = value.lstrip("#")
        if not _SLACK_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a Slack channel name: "
                "lower case letters, digits, '-' and '_', at most 80 characters"
            )
        return value


class SlackSettings(_Strict):
    """How the bot reaches Slack (the tokens themselves are secrets, set apart)."""

    mode: str = Field(default="http", description="http (Events API over HTTPS) or socket")
    api_url: str | None = Field(
        default=None, description="Web API base URL; set only for the local Slack server"
    )
    command: str = "/incident"
    pin_reaction: str = "pushpin"

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in ("http", "socket"):
            raise ValueError(f"unknown mode {value!r}: allowed are http, socket")
        return value

    @field_validator("pin_reaction")
    @classmethod
    def _reaction(cls, value: str) -> str:
        return value.strip(":")


class HttpSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Where people reach the bot's web app (https://incidentbot.example.com): the runbook run
    # message links to each run's page there. Unset: the message names the CLI command instead.
    public_url: str | None = Field(default=None, pattern=r"^https?://\S+$")


class Responders(_Strict):
    """Who is invited to every incident channel besides the declarer and the commander."""

    users: list[str] = Field(default_factory=list, description="Slack user ids (U...)")
    groups: list[str] = Field(default_factory=list, description="Slack user group ids (S...)")


DEFAULT_SEVERITIES = [
    Severity(
        name="SEV1",
        label="Critical",
        description="Customer-facing outage or funds at risk (validators slashed, RPC down).",
        page=True,
        cadence="15m",
        postmortem_required=True,
    ),
    Severity(
        name="SEV2",
        label="Major",
        description="Degraded service for many users (high RPC latency, missed attestations).",
        page=True,
        cadence="30m",
        postmortem_required=True,
    ),
    Severity(
        name="SEV3",
        label="Minor",
        description="Limited impact or redundancy lost (one node behind, one backend down).",
        cadence="2h",
    ),
    Severity(
        name="SEV4",
        label="Low",
        description="No user impact yet; worth tracking (disk filling, peers dropping).",
        cadence="1d",
    ),
]

DEFAULT_STATUSES = [
    Status(name="triage", label="Triage", description="Declared; impact being assessed."),
    Status(name="investigating", label="Investigating", description="Looking for the cause."),
    Status(name="identified", label="Identified", description="Cause known; fix under way."),
    Status(name="monitoring", label="Monitoring", description="Mitigated; watching recovery."),
    Status(name="resolved", label="Resolved", description="Impact over.", terminal=True),
    Status(name="closed", label="Closed", description="Follow-up done.", terminal=True),
]

DEFAULT_ROLES = [
    Role(
        name="commander",
        label="Incident commander",
        description="You lead the response: decide, delegate, keep the channel focused. "
        "Hand over explicitly when you step away.",
    ),
    Role(
        name="scribe",
        label="Scribe",
        description="You keep the timeline: pin key messages, record decisions and times.",
    ),
    Role(
        name="comms_lead",
        label="Communications lead",
        description="You post status updates on cadence and handle stakeholders and users.",
    ),
    Role(
        name="ops_lead",
        label="Operations lead",
        description="You run the hands-on work: runbooks, node restarts, failovers.",
    ),
]

DEFAULT_FIELDS = [
    FieldSpec(name="chain", label="Chain"),
    FieldSpec(name="network", label="Network"),
    FieldSpec(name="client", label="Client"),
    FieldSpec(name="component", label="Component"),
]

# Statuses the lifecycle needs by name; everything else about them is configurable.
REQUIRED_STATUSES = ("triage", "investigating", "monitoring", "resolved", "closed")
