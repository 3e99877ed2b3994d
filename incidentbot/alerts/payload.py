"""Reading Alertmanager's webhook payload (version 4) strictly enough to trust it.

A payload that is not what Alertmanager sends is refused whole with every problem named, so
nothing half-understood is stored. Timestamps are Go's RFC 3339 with nanoseconds; Go's zero
time (``0001-01-01T00:00:00Z``, the ``endsAt`` of a firing alert) means "not set". Labels and
annotations are redacted here, once: everything after this module (storage, matching,
templates, the timeline) sees only the redacted alert.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from incidentbot.ledger.redact import MASK, is_sensitive_key, redact_text, rules_generation
from incidentbot.typed_text import clean

MAX_ALERTS = 5000
_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class PayloadError(ValueError):
    """The body is not an Alertmanager webhook payload; the message says what is wrong."""


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 with up to nanoseconds → aware UTC (microseconds); Go's zero time → None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        match = _TS.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not an RFC 3339 time, e.g. 2024-05-01T12:00:00Z")
        base, frac, zone = match.groups()
        frac = (frac or "")[:7]  # a dot and at most six digits: Python keeps microseconds
        zone = "+00:00" if zone in ("Z", "z") else zone
        try:
            parsed = datetime.fromisoformat(f"{base}{frac}{zone}")
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid time: {exc}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    if parsed.year <= 1:
        return None
    return parsed.astimezone(UTC)


class _Model(BaseModel):
    # Alertmanager adds fields over time; unknown ones are kept in the stored payload only.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Alert(_Model):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = ""

    @field_validator("starts_at", mode="before")
    @classmethod
    def _starts(cls, value: Any) -> datetime:
        parsed = parse_time(value)
        if parsed is None:
            raise ValueError("startsAt is required: when the alert started firing")
        return parsed

    @field_validator("ends_at", mode="before")
    @classmethod
    def _ends(cls, value: Any) -> datetime | None:
        return parse_time(value)

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint(cls, value: str) -> str:
        if len(value) > 64 or not re.fullmatch(r"[0-9A-Za-z]*", value):
            raise ValueError("must be at most 64 letters and digits (Alertmanager sends 16 hex)")
        return value

    @field_validator("labels")
    @classmethod
    def _has_labels(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("an alert needs at least one label (alertname)")
        return value

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


class Payload(_Model):
    version: str = "4"
    receiver: str = ""
    status: Literal["firing", "resolved"]
    group_key: str = Field(alias="groupKey", min_length=1)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    alerts: list[Alert] = Field(max_length=MAX_ALERTS)
    # The masking rules' generation its alerts' labels, annotations and generator URLs were
    # masked under by :func:`parse` (-1: not masked by it). Private: never read from a body.
    _masked_under: int = PrivateAttr(default=-1)

    @property
    def masked_under(self) -> int | None:
        return None if self._masked_under < 0 else self._masked_under

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value != "4":
            raise ValueError(f"version {value!r} is not supported: Alertmanager sends version 4")
        return value


def fallback_fingerprint(labels: dict[str, str]) -> str:
    """For senders that leave ``fingerprint`` out: a stable hash of the label set."""
    digest = hashlib.sha256()
    for name in sorted(labels):
        digest.update(name.encode() + b"\xff" + labels[name].encode() + b"\xff")
    return digest.hexdigest()[:16]


def _format(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "is required"
        problems.append(f"{loc}: {msg}" if loc else msg)
    more = len(exc.errors()) - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


def parse(data: Any) -> tuple[Payload, dict[str, Any]]:
    """Validate a decoded JSON body; return the (redacted) payload and the redacted raw body
    to store. The raw body keeps fields this version does not know."""
    if not isinstance(data, dict):
        raise PayloadError("the body must be a JSON object (Alertmanager's webhook payload)")
    # What an alert says, without invisible control characters, and its redacted copy: one
    # walk over the body makes both. The rules' generation is read before it: if a rule is
    # added meanwhile, what was masked counts as masked under the older rules.
    generation = rules_generation()
    data, stored = _clean_and_redact(data)
    try:
        payload = Payload.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(f"not an Alertmanager webhook payload: {_format(exc)}") from None
    for alert, raw in zip(payload.alerts, stored["alerts"], strict=True):
        if not alert.fingerprint:
            alert.fingerprint = fallback_fingerprint(alert.labels)
            raw["fingerprint"] = redact_text(alert.fingerprint)
    # The payload gets the redacted values.
    for alert, redacted in zip(payload.alerts, stored["alerts"], strict=True):
        alert.labels = redacted["labels"]
        alert.annotations = redacted.get("annotations") or {}
        alert.generator_url = redacted.get("generatorURL") or ""
    payload.group_labels = stored.get("groupLabels") or {}
    payload.common_labels = stored.get("commonLabels") or {}
    payload.common_annotations = stored.get("commonAnnotations") or {}
    payload.external_url = stored.get("externalURL") or ""
    payload._masked_under = generation
    # "groupKey" reads as a secret to the key-name rule; it is identity, so keep it (redacted
    # as text). The payload keeps the raw key: the group's identity is a hash of it.
    stored["groupKey"] = redact_text(payload.group_key)
    return payload, stored


# Half of a UTF-16 pair alone (JSON's "\ud800" decodes to one): no encoding can store it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    """:func:`~incidentbot.typed_text.clean`, and a lone surrogate replaced (U+FFFD): the
    alert is stored rather than refused by the database on every retry."""
    return _LONE_SURROGATE.sub("\ufffd", clean(text))


def _clean_and_redact(value: Any) -> tuple[Any, Any]:
    """(``clean_tree(value)``, ``redact(clean_tree(value))``) in one walk."""
    return _Walk().walk(value)


class _Walk:
    """One walk over a body. A notification repeats most of its strings (each alert's status,
    ``alertname``, shared labels, times, URLs) and all of its keys: each distinct one is
    cleaned and masked once per walk (a dictionary lookup for the copies after it, where
    :func:`~incidentbot.ledger.redact.redact_text`'s own memory hashes each copy)."""

    __slots__ = ("_keys", "_texts")

    def __init__(self) -> None:
        self._texts: dict[str, tuple[str, str]] = {}
        self._keys: dict[str, tuple[str, bool]] = {}

    def walk(self, value: Any) -> tuple[Any, Any]:
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, dict):
            cleaned_dict: dict[Any, Any] = {}
            redacted_dict: dict[str, Any] = {}
            for key, item in value.items():
                if isinstance(key, str):
                    key, sensitive = self._key(key)
                    name = key
                else:  # JSON keys are strings; a dict built in Python may have others
                    name = str(key)
                    sensitive = is_sensitive_key(name)
                cleaned_item, redacted_item = self.walk(item)
                cleaned_dict[key] = cleaned_item
                secret = sensitive and cleaned_item not in (None, "")
                redacted_dict[name] = MASK if secret else redacted_item
            return cleaned_dict, redacted_dict
        if isinstance(value, list):
            pairs = [self.walk(item) for item in value]
            return [c for c, _ in pairs], [r for _, r in pairs]
        return value, value

    def _text(self, value: str) -> tuple[str, str]:
        known = self._texts.get(value)
        if known is None:
            # Printable ASCII (most label values) has nothing invisible to remove.
            cleaned = value if value.isascii() and value.isprintable() else _clean(value)
            known = self._texts[value] = (cleaned, redact_text(cleaned))
        return known

    def _key(self, key: str) -> tuple[str, bool]:
        known = self._keys.get(key)
        if known is None:
            cleaned = key if key.isascii() and key.isprintable() else _clean(key)
            known = self._keys[key] = (cleaned, is_sensitive_key(cleaned))
        return known
