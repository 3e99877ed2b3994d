"""Reading what people type (``sev2``, ``comms lead``) against the configured policy."""

from __future__ import annotations

import re

from incidentbot.config import FieldSpec, Role, Settings, Severity, Status
from incidentbot.errors import DomainError


def _allowed(names: list[str]) -> str:
    return ", ".join(names)


def severity(settings: Settings, text: str) -> Severity:
    """``2``, ``sev2``, ``SEV2``, ``Sev 2`` all name SEV2."""
    raw = re.sub(r"\s+", "", str(text)).upper()
    if raw.isdigit():
        raw = f"SEV{raw}"
    for sev in settings.severities:
        if sev.name == raw:
            return sev
    raise DomainError(
        f"unknown severity {text!r}: allowed are {_allowed(settings.severity_names())}"
    )


def status(settings: Settings, text: str) -> Status:
    raw = str(text).strip().lower()
    for st in settings.statuses:
        if raw in (st.name, st.label.lower()):
            return st
    names = [s.name for s in settings.statuses]
    raise DomainError(f"unknown status {text!r}: allowed are {_allowed(names)}")


def role(settings: Settings, text: str) -> Role:
    """``comms lead``, ``comms-lead``, ``comms_lead`` and the label all name the same role."""
    raw = re.sub(r"[\s-]+", "_", str(text).strip().lower())
    aliases = {"ic": "commander", "incident_commander": "commander"}
    raw = aliases.get(raw, raw)
    for r in settings.roles:
        if raw in (r.name, re.sub(r"[\s-]+", "_", r.label.lower())):
            return r
    names = [r.name for r in settings.roles]
    raise DomainError(f"unknown role {text!r}: allowed are {_allowed(names)}")


def field_spec(settings: Settings, name: str) -> FieldSpec:
    for spec in settings.fields:
        if spec.name == name:
            return spec
    names = [f.name for f in settings.fields]
    raise DomainError(f"unknown field {name!r}: allowed are {_allowed(names) or 'none'}")


def check_fields(settings: Settings, values: dict[str, str], *, declaring: bool) -> dict[str, str]:
    """Validate incident fields against their allowed lists; on declare, required ones too."""
    clean: dict[str, str] = {}
    for name, value in values.items():
        spec = field_spec(settings, name.strip().lower())
        value = str(value).strip()
        if not value:
            raise DomainError(f"field {spec.name!r} is empty: give a value or leave it out")
        if spec.allowed is not None and value not in spec.allowed:
            raise DomainError(
                f"{value!r} is not an allowed {spec.name}: allowed are {_allowed(spec.allowed)}"
            )
        clean[spec.name] = value
    if declaring:
        missing = [s.name for s in settings.fields if s.required and s.name not in clean]
        if missing:
            raise DomainError(f"missing required field(s): {', '.join(missing)}")
    return clean


def terminal_statuses(settings: Settings) -> list[str]:
    return [s.name for s in settings.statuses if s.terminal]
