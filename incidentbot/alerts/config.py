"""The ``alerts`` section of the settings: who may post alerts and how they are routed.

Rules are read once at start-up and checked there (matcher syntax, regexes, templates,
severities), so a typo in a rule fails ``incidentbot config check`` instead of an alert at
3 a.m. Matchers use Alertmanager's own syntax (``name="value"``, ``!=``, ``=~``, ``!~``) so a
rule can be copied from an Alertmanager route. This module is imported by
:mod:`incidentbot.config` and must not import it back.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
)

from incidentbot.durations import parse_duration

OPERATORS = ("=", "!=", "=~", "!~")
_MATCHER = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# One environment for every template: sandboxed (a rule cannot reach Python internals) and
# lenient about missing labels, which render as empty text rather than failing the alert.
templates = SandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True)


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True
    )


class Matcher(_Strict):
    """One label condition. A missing label has the value ``""``, as in Alertmanager."""

    label: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Read ``alertname="RpcDown"``, ``severity=~"critical|page"``, ``env!=staging``."""
        match = _MATCHER.match(str(text))
        if not match:
            raise ValueError(
                f"{text!r} is not a matcher: write <label><op><value> with op one of "
                f'{", ".join(OPERATORS)}, e.g. alertname="RpcDown" or instance=~"rpc-.*"'
            )
        label, op, raw = match.groups()
        value = raw
        if raw.startswith('"'):
            try:
                value = json.loads(raw)
            except ValueError:
                raise ValueError(f"{text!r}: the quoted value is not closed or escaped") from None
            if not isinstance(value, str):  # pragma: no cover - json.loads of "..." is a str
                raise ValueError(f"{text!r}: the value must be a string")
        matcher = cls(label=label, op=op, value=value)
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{text!r}: invalid regular expression: {exc}") from None
        return matcher

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        # Alertmanager anchors regexes at both ends.
        found = _regex(self.value).fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.label}{self.op}{json.dumps(self.value)}"


_regex_cache: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    compiled = _regex_cache.get(pattern)
    if compiled is None:
        compiled = _regex_cache[pattern] = re.compile(pattern)
    return compiled


def _severity_name(value: str | None) -> str | None:
    """``sev2``, ``2`` and ``SEV2`` all name SEV2 (checked against ``severities`` later)."""
    if value is None:
        return None
    raw = re.sub(r"\s+", "", str(value)).upper()
    return f"SEV{raw}" if raw.isdigit() else raw


def _check_template(value: str, what: str) -> str:
    try:
        templates.parse(value)
    except TemplateSyntaxError as exc:
        raise ValueError(
            f"{what} is not a valid template: {exc.message} (line {exc.lineno})"
        ) from None
    return value


class RunbookSuggestion(_Strict):
    """The runbook to suggest for a matching alert, with parameters taken from its labels."""

    name: str = Field(min_length=1, max_length=100)
    params: dict[str, str] = Field(
        default_factory=dict, description="runbook parameter -> the label it is taken from"
    )
    with_: dict[str, str] = Field(
        default_factory=dict,
        alias="with",
        description="runbook parameter -> fixed value or template over labels/annotations",
    )

    @field_validator("params")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for param, label in value.items():
            if not _LABEL.match(label):
                raise ValueError(
                    f"params.{param}: {label!r} is not a label name (write the label the "
                    "value comes from, e.g. node: instance; templates go under `with`)"
                )
        return value

    @field_validator("with_")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        for param, text in value.items():
            _check_template(text, f"with.{param}")
        return value


class AlertRule(_Strict):
    """Alerts whose labels satisfy every matcher get this rule's severity, service, title and
    runbook. Rules are tried in order; the first match wins."""

    name: str = Field(min_length=1, max_length=64)
    # Shown (config show) in the syntax they are written in.
    matchers: Annotated[list[Matcher], PlainSerializer(lambda ms: [str(m) for m in ms])] = Field(
        default_factory=list, description="all must hold; none means every alert"
    )
    severity: str | None = Field(default=None, description="default: default_severity")
    service: str | None = Field(default=None, max_length=64)
    title: str | None = Field(default=None, description="Jinja2 over labels and annotations")
    fields: dict[str, str] = Field(
        default_factory=dict, description="incident field -> value or template"
    )
    runbook: RunbookSuggestion | None = None
    declare: bool = Field(
        default=True, description="false: record matching alerts but never open an incident"
    )
    declare_after: timedelta | None = Field(
        default=None,
        description="declare only once an alert has been firing this long (e.g. 10m)",
    )
    declare_min_severity: str | None = Field(
        default=None,
        description="declare only if this rule's severity is at least this (default: "
        "alerts.declare_min_severity)",
    )

    @field_validator("declare_after", mode="before")
    @classmethod
    def _declare_after(cls, value: Any) -> Any:
        if value is None:
            return None
        delta = parse_duration(value)
        if delta < timedelta(0) or delta > timedelta(days=1):
            raise ValueError("must be between 0 and 24h")
        return delta

    @field_validator("matchers", mode="before")
    @classmethod
    def _parse_matchers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ValueError('must be a list of matchers, e.g. ["alertname=RpcDown"]')
        return [Matcher.parse(v) if isinstance(v, str) else v for v in value]

    @field_validator("severity", "declare_min_severity")
    @classmethod
    def _severity(cls, value: str | None) -> str | None:
        return _severity_name(value)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        return _check_template(value, "title") if value is not None else None

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            _check_template(text, f"fields.{name}")
        return value

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


class AlertSettings(_Strict):
    """``alerts:`` in incidentbot.yaml. The token itself is the secret
    ``INCIDENTBOT_ALERTMANAGER_TOKEN`` (environment or secrets directory only)."""

    actor: str = Field(
        default="alertmanager", min_length=1, max_length=128, description="who declares"
    )
    basic_auth_username: str = Field(
        default="alertmanager", min_length=1, description="user name for basic auth"
    )
    rules: list[AlertRule] = Field(default_factory=list)
    declare_min_severity: str | None = Field(
        default=None,
        description="rules less severe than this record and attach alerts but never declare; "
        "unset: every rule may declare",
    )
    message_interval: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="seconds between two updates of a group's message in the incident channel",
    )

    @field_validator("declare_min_severity")
    @classmethod
    def _min_severity(cls, value: str | None) -> str | None:
        return _severity_name(value)

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: list[AlertRule]) -> list[AlertRule]:
        seen: set[str] = set()
        for i, rule in enumerate(value):
            if rule.name in seen:
                raise ValueError(f"rules[{i}].name: duplicate rule name {rule.name!r}")
            seen.add(rule.name)
        return value


def _check_policy(value: AlertSettings, info: ValidationInfo) -> AlertSettings:
    """Rules may only name configured severities and incident fields. (Runs after the
    ``severities`` and ``fields`` settings, which are declared before ``alerts``.)"""
    problems: list[str] = []
    severities = info.data.get("severities")
    fields = info.data.get("fields")
    names = [s.name for s in severities] if severities is not None else None

    def check_severity(where: str, severity: str | None) -> None:
        if names is not None and severity is not None and severity not in names:
            problems.append(
                f"{where}: {severity!r} is not a configured severity: "
                f"allowed are {', '.join(names)}"
            )

    check_severity("declare_min_severity", value.declare_min_severity)
    for i, rule in enumerate(value.rules):
        check_severity(f"rules[{i}].severity", rule.severity)
        check_severity(f"rules[{i}].declare_min_severity", rule.declare_min_severity)
        if fields is not None:
            field_names = [f.name for f in fields]
            for name in rule.fields:
                if name not in field_names:
                    problems.append(
                        f"rules[{i}].fields: unknown incident field {name!r}: "
                        f"allowed are {', '.join(field_names) or 'none'}"
                    )
    if problems:
        raise ValueError("; ".join(problems))
    return value


AlertsConfig = Annotated[AlertSettings, AfterValidator(_check_policy)]
