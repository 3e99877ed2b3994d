"""Postmortem metrics from milestones: unknown when one is missing (never zero), out of order
when the end comes before the start (never negative); time at each severity; due dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident, TimelineEvent
from incidentbot.postmortems import lifecycle
from incidentbot.postmortems import metrics as m
from incidentbot.postmortems.render import render

T0 = datetime(2025, 3, 11, 10, 0, tzinfo=UTC)


def fmt(when: datetime) -> str:
    return when.strftime("%H:%M:%S")


def incident(**milestones: datetime | None) -> Incident:
    values = {f"{k}_at": v for k, v in milestones.items()}
    values.setdefault("declared_at", T0)
    return Incident(
        number=1,
        title="t",
        severity="SEV2",
        status="resolved",
        declared_by="alice",
        created_at=T0,
        updated_at=T0,
        **values,
    )


def by_key(spans: list[m.Span]) -> dict[str, m.Span]:
    return {s.key: s for s in spans}


def test_every_metric_when_every_milestone_is_known():
    inc = incident(
        impact_started=T0 - timedelta(minutes=10),
        detected=T0 - timedelta(minutes=4),
        acknowledged=T0 + timedelta(minutes=3),
        mitigated=T0 + timedelta(minutes=20),
        resolved=T0 + timedelta(hours=1, minutes=5),
    )
    got = by_key(m.response_metrics(inc, fmt))
    assert {k: (s.state, s.text) for k, s in got.items()} == {
        "time_to_detect": ("ok", "6m 00s"),
        "time_to_acknowledge": ("ok", "7m 00s"),
        "time_to_mitigate": ("ok", "30m 00s"),
        "time_to_resolve": ("ok", "1h 15m"),
    }
    assert got["time_to_mitigate"].value == timedelta(minutes=30)
    assert m.order_problems(inc, fmt) == []


def test_a_missing_milestone_makes_its_metrics_unknown_never_zero():
    inc = incident(detected=T0, acknowledged=T0, resolved=T0 + timedelta(minutes=30))
    got = by_key(m.response_metrics(inc, fmt))
    assert got["time_to_detect"].state == "unknown"
    assert got["time_to_detect"].text == "unknown (no impact started time)"
    assert got["time_to_detect"].value is None
    assert got["time_to_mitigate"].text == "unknown (no impact started or mitigated time)"
    # a real zero is still a zero: detected and acknowledged at the same second
    assert got["time_to_acknowledge"].state == "ok"
    assert got["time_to_acknowledge"].text == "0s"
    impact = by_key(m.impact_spans(inc, fmt))
    assert impact["impact_to_resolution"].state == "unknown"


def test_milestones_out_of_order_are_said_and_give_no_value():
    inc = incident(
        impact_started=T0 + timedelta(minutes=5),  # typed after detection by mistake
        detected=T0 - timedelta(minutes=2),
        acknowledged=T0 + timedelta(minutes=1),
        mitigated=T0 + timedelta(minutes=30),
        resolved=T0 + timedelta(minutes=25),
    )
    got = by_key(m.response_metrics(inc, fmt))
    detect = got["time_to_detect"]
    assert detect.state == "out_of_order"
    assert detect.value is None
    assert detect.text == "out of order: detected (09:58:00) is before impact started (10:05:00)"
    assert got["time_to_acknowledge"].text == "3m 00s"
    assert got["time_to_resolve"].text == "20m 00s"
    assert m.order_problems(inc, fmt) == [
        "detected (09:58:00) is before impact started (10:05:00)",
        "declared (10:00:00) is before impact started (10:05:00)",
        "resolved (10:25:00) is before mitigated (10:30:00)",
    ]


def event(kind: str, minutes: int, **data: str) -> TimelineEvent:
    at = T0 + timedelta(minutes=minutes)
    return TimelineEvent(
        incident_id=1, occurred_at=at, recorded_at=at, kind=kind, actor="a", summary="", data=data
    )


ORDER = ["SEV1", "SEV2", "SEV3", "SEV4"]


def test_time_at_each_severity_counts_reopened_stretches_only():
    events = [
        event("incident.declared", 0, severity="SEV3"),
        event("severity.changed", 10, **{"from": "SEV3", "to": "SEV1"}),
        event("incident.resolved", 40),
        event("incident.reopened", 100),  # the hour in between was not at any severity
        event("severity.changed", 110, **{"from": "SEV1", "to": "SEV2"}),
        event("incident.resolved", 115),
    ]
    times, changes = m.severity_times(events, ORDER)
    assert [(t.severity, t.total, t.open_since) for t in times] == [
        ("SEV1", timedelta(minutes=40), None),
        ("SEV2", timedelta(minutes=5), None),
        ("SEV3", timedelta(minutes=10), None),
    ]
    assert [(before, after) for _ev, before, after in changes] == [
        ("SEV3", "SEV1"),
        ("SEV1", "SEV2"),
    ]
    assert m.worst_severity(events, "SEV2", ORDER) == "SEV1"


def test_an_open_incident_has_no_made_up_end():
    events = [
        event("incident.declared", 0, severity="SEV2"),
        event("severity.changed", 15, **{"from": "SEV2", "to": "SEV1"}),
    ]
    times, _ = m.severity_times(events, ORDER)
    assert [(t.severity, t.total, t.open_since) for t in times] == [
        ("SEV1", timedelta(0), T0 + timedelta(minutes=15)),
        ("SEV2", timedelta(minutes=15), None),
    ]


@pytest.mark.parametrize(
    ("resolved", "tz", "days", "due"),
    [
        ("2025-03-11T10:52:00+00:00", "UTC", 5, "2025-03-18"),  # Tuesday → Tuesday
        ("2025-03-14T16:00:00+00:00", "UTC", 5, "2025-03-21"),  # Friday → Friday
        ("2025-03-15T09:00:00+00:00", "UTC", 5, "2025-03-21"),  # Saturday → Friday
        ("2025-03-14T02:00:00+00:00", "UTC", 1, "2025-03-17"),  # Friday → Monday
        # Friday 02:00 UTC is still Thursday evening in California
        ("2025-03-14T02:00:00+00:00", "America/Los_Angeles", 1, "2025-03-14"),
        ("2025-03-14T02:00:00+00:00", "UTC", 0, "2025-03-14"),
    ],
)
def test_due_dates_count_business_days_in_the_team_time_zone(resolved, tz, days, due):
    settings = Settings(timezone=tz, postmortems={"due_business_days": days})
    assert lifecycle.due_date(settings, datetime.fromisoformat(resolved)).isoformat() == due


def test_the_document_marks_missing_and_out_of_order_milestones(engine, settings):
    now = T0 + timedelta(hours=2)
    with db.transaction(engine) as s:
        svc.declare(
            s,
            settings,
            title="Validators miss attestations",
            severity="SEV2",
            actor="alice",
            now=T0,
        )
        svc.set_milestone(
            s,
            settings,
            "INC-1",
            "impact_started",
            T0 + timedelta(minutes=20),
            actor="alice",
            now=now,
        )
        svc.set_milestone(
            s, settings, "INC-1", "detected", T0 + timedelta(minutes=5), actor="alice", now=now
        )
    with db.transaction(engine) as s:
        md = render(s, settings, svc.get(s, "INC-1"), "md").text
    assert "| Time to detect | impact started → detected | **out of order: detected " in md
    assert (
        "| Time to acknowledge | detected → acknowledged | unknown (no acknowledged time) |" in md
    )
    assert "| Time to resolve | impact started → resolved | unknown (no resolved time) |" in md
    assert "> **Note:** Milestones out of order: detected (2025-03-11 10:05:00) is before " in md
    assert "> **Note:** INC-1 is not resolved yet (Triage)" in md
    assert "| SEV2 Major | 0s | still SEV2 since 2025-03-11 10:00:00: not resolved |" in md
    assert "| Closed | not recorded |" in md
