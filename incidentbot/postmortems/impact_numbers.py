"""The impact in numbers: requests failed, users and validators affected, how long service was
degraded, blocks behind and missed slots.

People type them (in the Impact form in Slack, or ``incidentbot postmortem impact``); each
is stored with who typed it and when, in the postmortem's ``impact`` column. For a chain
incident whose validators were sampled, validators affected, blocks behind and missed slots
also come from the beacon node's samples (:mod:`~incidentbot.postmortems.chain`) when no one
typed them: the document says which, never a zero that was not measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from incidentbot.durations import format_duration, parse_duration
from incidentbot.errors import DomainError
from incidentbot.postmortems.chain import KIND as SAMPLE_KIND
from incidentbot.postmortems.contents import ImpactNumber

COUNT, DURATION = "count", "duration"
MAX_COUNT = 10**12  # more than any real count: a typo, not a number
MAX_DURATION = timedelta(days=366)


@dataclass(frozen=True)
class Number:
    key: str
    label: str
    kind: str  # count or duration
    option: str  # the CLI option
    hint: str  # what to type


NUMBERS = (
    Number("requests_failed", "Requests failed", COUNT, "--requests-failed", "e.g. 1200"),
    Number("users_affected", "Users affected", COUNT, "--users", "e.g. 30"),
    Number("validators_affected", "Validators affected", COUNT, "--validators", "e.g. 4"),
    Number("degraded", "Degraded service", DURATION, "--degraded", "e.g. 40m or 1h30m"),
    Number("blocks_behind", "Blocks behind", COUNT, "--blocks-behind", "e.g. 12"),
    Number("missed_slots", "Missed slots", COUNT, "--missed-slots", "e.g. 3"),
)
BY_KEY = {n.key: n for n in NUMBERS}
KEYS = tuple(BY_KEY)
_ALIASES = {
    "requests": "requests_failed",
    "failed_requests": "requests_failed",
    "users": "users_affected",
    "validators": "validators_affected",
    "degraded_service": "degraded",
    "duration": "degraded",
    "blocks": "blocks_behind",
    "slots": "missed_slots",
}


def number_key(text: str) -> str:
    """``requests-failed``, ``requests_failed``, ``requests`` … name a number."""
    raw = "_".join(str(text).strip().lower().replace("-", " ").split())
    key = _ALIASES.get(raw, raw)
    if key not in BY_KEY:
        raise DomainError(f"unknown impact number {text!r}: allowed are {', '.join(KEYS)}")
    return key


def parse_value(key: str, text: str | int) -> int:
    """A typed value as stored: a count, or a duration in seconds. Refused with what to type:
    negative, fractional, not a number, a duration without a unit, absurdly large."""
    spec = BY_KEY[number_key(key)]
    name = spec.label.lower()
    if isinstance(text, bool):
        raise DomainError(f"{name} must be a whole number: {spec.hint}")
    raw = str(text).strip().replace(",", "").replace("_", "")
    shown = str(text).strip()[:40]
    if raw.startswith("-"):
        raise DomainError(f"{name} must not be negative: {spec.hint}")
    if spec.kind == DURATION:
        if raw.isdigit():
            raise DomainError(f"{name} {shown!r} needs a unit: {spec.hint}")
        try:
            delta = parse_duration(raw)
        except ValueError:
            raise DomainError(f"{name} {shown!r} is not a duration: {spec.hint}") from None
        if delta > MAX_DURATION:
            raise DomainError(f"{name} is longer than a year: {spec.hint}")
        return int(delta.total_seconds())
    if not raw.isascii() or not raw.isdigit():
        raise DomainError(
            f"{name} {shown!r} is not a whole number (no units, no decimals): {spec.hint}"
        )
    value = int(raw)
    if value > MAX_COUNT:
        raise DomainError(f"{name} {value} is too large: {spec.hint}")
    return value


def show(key: str, value: int) -> str:
    """A stored value as the document writes it."""
    if BY_KEY[key].kind == DURATION:
        return format_duration(timedelta(seconds=value))
    return f"{value:,}"


def apply(
    stored: Mapping[str, Any] | None,
    changes: Mapping[str, int | None],
    *,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """The stored numbers with ``changes`` made (None removes one): a new dict."""
    out = dict(stored or {})
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = {"value": int(value), "by": actor, "at": now.isoformat()}
    return out


def typed(stored: Mapping[str, Any] | None) -> dict[str, int]:
    """The values people typed, by key (entries that do not read as numbers are ignored)."""
    out = {}
    for key, entry in (stored or {}).items():
        value = entry.get("value") if isinstance(entry, dict) else None
        if key in BY_KEY and isinstance(value, int) and not isinstance(value, bool):
            out[key] = value
    return out


@dataclass(frozen=True)
class Sampled:
    value: int
    source: str


def sampled(events: Iterable[Any]) -> dict[str, Sampled]:
    """Validators affected, blocks behind and missed slots from the beacon node's samples
    (none without samples)."""
    seen: dict[int, dict[str, Any]] = {}
    for ev in events:
        if ev.kind != SAMPLE_KIND:
            continue
        epoch = (ev.data or {}).get("epoch")
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            seen.setdefault(epoch, ev.data)
    if not seen:
        return {}
    epochs = sorted(seen)
    span = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}–{epochs[-1]}"
    nodes = sorted({str(d.get("source") or "beacon node") for d in seen.values()})
    where = f"{len(epochs)} sample{'s' if len(epochs) != 1 else ''}, {span}; {', '.join(nodes)}"
    validators: set[Any] = set()
    slots: set[Any] = set()
    behind = 0
    for d in seen.values():
        validators.update(v for v in d.get("missed_attestations") or [] if _hashable(v))
        slots.update(s for s in d.get("missed_proposals") or [] if _hashable(s))
        dist = d.get("sync_distance")
        if isinstance(dist, int) and not isinstance(dist, bool):
            behind = max(behind, dist)
    return {
        "validators_affected": Sampled(
            len(validators), f"sampled from the beacon node: validators not live ({where})"
        ),
        "blocks_behind": Sampled(
            behind, f"sampled from the beacon node: the largest sync distance ({where})"
        ),
        "missed_slots": Sampled(
            len(slots), f"sampled from the beacon node: proposer slots without a block ({where})"
        ),
    }


def _hashable(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def rows(
    stored: Mapping[str, Any] | None,
    events: Iterable[Any],
    names: Callable[[str], str],
    fmt: Callable[[datetime | None], str],
) -> list[ImpactNumber]:
    """Every number: typed (by whom, when), else sampled (from where), else missing."""
    found = sampled(events)
    out = []
    for spec in NUMBERS:
        entry = (stored or {}).get(spec.key)
        value = entry.get("value") if isinstance(entry, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            who = names(str(entry.get("by") or "someone"))
            at = _parse_at(entry.get("at"))
            source = f"typed by {who}" + (f" at {fmt(at)}" if at else "")
            sample = found.get(spec.key)
            if sample is not None:
                source += f" (sampled: {show(spec.key, sample.value)})"
            out.append(ImpactNumber(spec.key, spec.label, show(spec.key, value), source, "typed"))
        elif spec.key in found:
            sample = found[spec.key]
            out.append(
                ImpactNumber(
                    spec.key, spec.label, show(spec.key, sample.value), sample.source, "sampled"
                )
            )
        else:
            out.append(ImpactNumber(spec.key, spec.label, "—", "", "missing"))
    return out


def _parse_at(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None
