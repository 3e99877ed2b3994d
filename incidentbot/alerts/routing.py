"""Routing one alert: which rule matches, and what the rule makes of it.

Pure functions over the (redacted) alert, so routing is tested without a database and gives
the same answer every time the same alert comes back. Rendering never fails an alert: a
template that breaks at render time (a filter on a missing label, a sandbox refusal) falls back
to the default title and the problem is reported next to the result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateError

from incidentbot.alerts.config import AlertRule, AlertSettings, templates
from incidentbot.alerts.payload import Alert, Payload
from incidentbot.ledger.redact import redact_text

log = logging.getLogger(__name__)

MAX_TITLE = 200  # incidents.service.MAX_TITLE: a longer title would be refused at declare


@dataclass(frozen=True)
class Route:
    """What the first matching rule gives an alert (``rule`` None: no rule matched)."""

    rule: AlertRule | None

    @property
    def matched(self) -> bool:
        return self.rule is not None

    @property
    def rule_name(self) -> str | None:
        return self.rule.name if self.rule else None

    @property
    def declares(self) -> bool:
        return self.rule is not None and self.rule.declare

    def declares_at(self, starts_at: datetime, now: datetime) -> bool:
        """May an alert that started at ``starts_at`` declare now (``declare_after``)?"""
        if not self.declares:
            return False
        assert self.rule is not None
        wait = self.rule.declare_after
        return wait is None or now - starts_at >= wait

    def severe_enough(self, alerts: AlertSettings, names: list[str], default: str) -> bool:
        """Is the rule's severity at least its ``declare_min_severity`` (or the setting's)?
        ``names`` are the configured severities, most severe first."""
        if self.rule is None:
            return False
        minimum = self.rule.declare_min_severity or alerts.declare_min_severity
        if minimum is None:
            return True
        return names.index(self.rule.severity or default) <= names.index(minimum)


@dataclass
class Suggestion:
    """A runbook suggested by a rule, with the parameters this alert's labels gave it."""

    runbook: str
    params: dict[str, str]
    missing: list[str] = field(default_factory=list)

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        text = f"Suggested runbook {self.runbook}" + (f" with {args}" if args else "")
        if self.missing:
            text += f" (missing: {', '.join(self.missing)})"
        return text


def route(settings: AlertSettings, labels: dict[str, str]) -> Route:
    """The first rule whose matchers all hold; rules are tried in configuration order."""
    for rule in settings.rules:
        if rule.matches(labels):
            return Route(rule)
    return Route(None)


def context(alert: Alert, payload: Payload | None = None) -> dict[str, Any]:
    """What templates see: the alert's labels and annotations and its group's common ones."""
    return {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "status": alert.status,
        "starts_at": alert.starts_at.isoformat(),
        "fingerprint": alert.fingerprint,
        "group_labels": dict(payload.group_labels) if payload else {},
        "common_labels": dict(payload.common_labels) if payload else {},
        "common_annotations": dict(payload.common_annotations) if payload else {},
        "receiver": payload.receiver if payload else "",
    }


def render(source: str, ctx: dict[str, Any]) -> str:
    """Render a template in the sandbox; the result is redacted again (a template can join
    values into something that looks like a credential)."""
    return redact_text(_compiled(source).render(ctx))


@lru_cache(maxsize=512)
def _compiled(source: str) -> Template:
    """Rules' templates are few and fixed at start-up: each is compiled once, not per alert."""
    return templates.from_string(source)


def default_title(alert: Alert) -> str:
    name = alert.alertname or "Alert"
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    where = alert.labels.get("instance") or alert.labels.get("job") or ""
    title = name + (f" on {where}" if where and where not in summary else "")
    return f"{title}: {summary}" if summary else title


def safe_default_title(alert: Alert) -> str:
    """:func:`default_title`, masked as a whole and cut to :data:`MAX_TITLE`."""
    return clip(redact_text(default_title(alert)))


def clip(text: str, limit: int = MAX_TITLE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def title(rule: AlertRule | None, alert: Alert, payload: Payload | None) -> tuple[str, str | None]:
    """The incident title for an alert, and a problem to report if the template failed.

    The title becomes the channel name and is announced and logged, so it is masked as a
    whole, before it is cut to size: values redacted one by one can still make a secret once
    joined (a label that says ``private key`` before a summary that is the key)."""
    if rule is None or rule.title is None:
        return safe_default_title(alert), None
    try:
        rendered = clip(render(rule.title, context(alert, payload)))
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        log.warning("alert rule %s: title template failed: %s", rule.name, exc)
        return safe_default_title(alert), f"rule {rule.name}: title template failed: {exc}"
    if not rendered:
        return safe_default_title(alert), f"rule {rule.name}: the title template gave nothing"
    return rendered, None


def fields(rule: AlertRule | None, alert: Alert, payload: Payload | None) -> dict[str, str]:
    """Incident fields the rule sets; a field whose template renders empty is left out."""
    out: dict[str, str] = {}
    if rule is None:
        return out
    ctx = context(alert, payload)
    for name, source in rule.fields.items():
        try:
            value = " ".join(render(source, ctx).split())
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
            log.warning("alert rule %s: field %s template failed: %s", rule.name, name, exc)
            continue
        if value:
            out[name] = value[:200]
    return out


def suggestion(rule: AlertRule | None, alert: Alert) -> Suggestion | None:
    """The rule's runbook with its parameters filled from the alert's labels."""
    if rule is None or rule.runbook is None:
        return None
    book = rule.runbook
    params: dict[str, str] = {}
    missing: list[str] = []
    for param, label in book.params.items():
        value = alert.labels.get(label, "")
        if value:
            params[param] = value
        else:
            missing.append(f"{param} (no label {label})")
    ctx = context(alert)
    for param, source in book.with_.items():
        try:
            value = render(source, ctx).strip()
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
            missing.append(f"{param} (template failed: {exc})")
            continue
        if value:
            params[param] = value
        else:
            missing.append(f"{param} (empty)")
    return Suggestion(book.name, params, missing)
