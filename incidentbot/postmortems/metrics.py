"""Durations a postmortem reports, from the incident's milestones and timeline.

A duration needs both of its milestones: a missing one makes it ``unknown`` (never zero), and
an end before its start makes it ``out of order`` (never negative), with what is wrong said.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from incidentbot.durations import format_duration
from incidentbot.incidents.models import Incident

LABELS = {
    "impact_started": "impact started",
    "detected": "detected",
    "declared": "declared",
    "acknowledged": "acknowledged",
    "mitigated": "mitigated",
    "resolved": "resolved",
    "closed": "closed",
}

# (key, label, from, to): the four response metrics.
METRICS = (
    ("time_to_detect", "Time to detect", "impact_started", "detected"),
    ("time_to_acknowledge", "Time to acknowledge", "detected", "acknowledged"),
    ("time_to_mitigate", "Time to mitigate", "impact_started", "mitigated"),
    ("time_to_resolve", "Time to resolve", "impact_started", "resolved"),
)

# Pairs of milestones that must come in this order when both are known.
ORDER = (
    ("impact_started", "detected"),
    ("impact_started", "declared"),
    ("impact_started", "mitigated"),
    ("detected", "declared"),
    ("detected", "acknowledged"),
    ("declared", "resolved"),
    ("acknowledged", "resolved"),
    ("mitigated", "resolved"),
    ("resolved", "closed"),
)

OK, UNKNOWN, OUT_OF_ORDER = "ok", "unknown", "out_of_order"


class EventLike(Protocol):
    """A timeline event as documents read it: a stored row, or the plain values of one
    (:class:`incidentbot.postmortems.rows.Event`)."""

    @property
    def id(self) -> int | None: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def kind(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...


# How a point in time is shown in a message (the document's time zone).
Fmt = Callable[[datetime], str]


@dataclass(frozen=True)
class Span:
    """A duration between two milestones, or why there is none."""

    key: str
    label: str
    start: str
    end: str
    value: timedelta | None
    state: str  # ok, unknown, out_of_order
    text: str

    @property
    def span_label(self) -> str:
        return f"{LABELS[self.start]} → {LABELS[self.end]}"


def milestones(incident: Incident) -> dict[str, datetime | None]:
    return {name: incident.milestone(name) for name in LABELS}


# Where a milestone the lifecycle records comes from, when no one set it by hand.
AUTOMATIC = {
    "declared": "the declare",
    "acknowledged": "the first acknowledgement (a page or a status change)",
    "mitigated": "the first status change to monitoring (or the resolve)",
    "resolved": "the resolve",
    "closed": "the close",
}


@dataclass(frozen=True)
class Times:
    """The milestones a document measures with, and where each time came from."""

    at: dict[str, datetime | None]
    source: dict[str, str]  # milestone -> "set by U123", "the first alert", ...
    setters: dict[str, str]  # milestone -> the actor who set it by hand
    via: dict[str, str] = field(default_factory=dict)  # milestone -> "resolve": the resolve form


def sourced(incident: Incident, events: Iterable[EventLike], alert_actor: str) -> Times:
    """The incident's milestones with their sources. ``detected`` not recorded defaults to the
    first alert that fired on the incident, or (no alert: a person reported it) to the
    declare; each default says so."""
    at = milestones(incident)
    source: dict[str, str] = {}
    setters: dict[str, str] = {}
    given: dict[str, str] = {}
    first_alert: datetime | None = None
    for ev in events:
        if ev.kind == "milestone.set":
            name = str(ev.data.get("milestone") or "")
            if name in LABELS:
                if ev.actor == alert_actor:
                    source[name] = "the first alert that fired"
                    setters.pop(name, None)
                else:
                    source[name] = "set by hand"
                    setters[name] = ev.actor
                given[name] = str(ev.data.get("via") or "")
        elif ev.kind == "alert.firing" and (first_alert is None or ev.occurred_at < first_alert):
            first_alert = ev.occurred_at
    if at["detected"] is None:
        if first_alert is not None:
            at["detected"] = first_alert
            source["detected"] = "the first alert that fired (default)"
        elif at["declared"] is not None:
            at["detected"] = at["declared"]
            source["detected"] = "the declare: no alert fired, a person reported it (default)"
    for name, when in at.items():
        if when is None:
            source[name] = "not recorded"
        elif name not in source:
            source[name] = AUTOMATIC.get(name, "recorded")
    return Times(at, source, setters, {k: v for k, v in given.items() if v and k in setters})


def span(
    key: str, label: str, start: str, end: str, times: dict[str, datetime | None], fmt: Fmt
) -> Span:
    a, b = times.get(start), times.get(end)
    missing = [LABELS[n] for n, t in ((start, a), (end, b)) if t is None]
    if missing:
        return Span(
            key, label, start, end, None, UNKNOWN, f"unknown (no {' or '.join(missing)} time)"
        )
    assert a is not None and b is not None
    if b < a:
        return Span(
            key,
            label,
            start,
            end,
            None,
            OUT_OF_ORDER,
            f"out of order: {LABELS[end]} ({fmt(b)}) is before {LABELS[start]} ({fmt(a)})",
        )
    return Span(key, label, start, end, b - a, OK, format_duration(b - a))


def response_metrics(
    incident: Incident, fmt: Fmt, times: dict[str, datetime | None] | None = None
) -> list[Span]:
    times = milestones(incident) if times is None else times
    return [span(k, label, a, b, times, fmt) for k, label, a, b in METRICS]


def impact_spans(
    incident: Incident, fmt: Fmt, times: dict[str, datetime | None] | None = None
) -> list[Span]:
    times = milestones(incident) if times is None else times
    return [
        span(
            "impact_to_mitigation",
            "Impact until mitigation",
            "impact_started",
            "mitigated",
            times,
            fmt,
        ),
        span(
            "impact_to_resolution",
            "Impact until resolution",
            "impact_started",
            "resolved",
            times,
            fmt,
        ),
    ]


def order_problems(
    incident: Incident, fmt: Fmt, times: dict[str, datetime | None] | None = None
) -> list[str]:
    """Every pair of milestones recorded in the wrong order, said plainly."""
    times = milestones(incident) if times is None else times
    out = []
    for first, then in ORDER:
        a, b = times.get(first), times.get(then)
        if a is not None and b is not None and b < a:
            out.append(f"{LABELS[then]} ({fmt(b)}) is before {LABELS[first]} ({fmt(a)})")
    return out


@dataclass(frozen=True)
class SeverityTime:
    severity: str
    total: timedelta  # closed stretches only: no "now" in a document
    open_since: datetime | None = None  # not resolved: at this severity since then


def severity_times(
    events: Iterable[EventLike], order: list[str]
) -> tuple[list[SeverityTime], list[tuple[EventLike, str, str]]]:
    """Time spent at each severity (declared → each change → resolved; a reopen starts the
    clock again) in ``order``, and the changes as (event, from, to)."""
    totals: dict[str, timedelta] = {}
    changes: list[tuple[EventLike, str, str]] = []
    current: str | None = None
    since: datetime | None = None
    for ev in events:
        kind = ev.kind
        if kind == "incident.declared":
            current = str(ev.data.get("severity") or "") or None
            since = ev.occurred_at
            if current:
                totals.setdefault(current, timedelta(0))
        elif kind == "severity.changed":
            new = str(ev.data.get("to") or "")
            old = str(ev.data.get("from") or current or "")
            changes.append((ev, old, new))
            if current is not None and since is not None:
                totals[current] = totals.get(current, timedelta(0)) + max(
                    timedelta(0), ev.occurred_at - since
                )
            current, since = new or current, (ev.occurred_at if since is not None else None)
            if current:
                totals.setdefault(current, timedelta(0))
        elif kind == "incident.resolved":
            if current is not None and since is not None:
                totals[current] = totals.get(current, timedelta(0)) + max(
                    timedelta(0), ev.occurred_at - since
                )
            since = None
        elif kind == "incident.reopened":
            since = ev.occurred_at
    rank = {name: i for i, name in enumerate(order)}
    out = [
        SeverityTime(sev, total, since if since is not None and sev == current else None)
        for sev, total in totals.items()
    ]
    out.sort(key=lambda t: (rank.get(t.severity, len(rank)), t.severity))
    return out, changes


def worst_severity(events: Iterable[EventLike], current: str, order: list[str]) -> str:
    """The most severe severity the incident has had (from the timeline and now)."""
    seen = {current}
    for ev in events:
        if ev.kind == "incident.declared" and ev.data.get("severity"):
            seen.add(str(ev.data["severity"]))
        elif ev.kind == "severity.changed" and ev.data.get("to"):
            seen.add(str(ev.data["to"]))
    rank = {name: i for i, name in enumerate(order)}
    return min(seen, key=lambda s: (rank.get(s, len(rank)), s))
