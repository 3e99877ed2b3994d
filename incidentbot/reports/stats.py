"""The figures of the report, read from the database in one transaction.

The three means use the same milestones as the postmortem's metrics, so the report and the
documents agree: MTTA is detected → acknowledged, MTTM impact started → mitigated, MTTR impact
started → resolved. An incident without one of the two milestones (or with them out of order)
is left out of that mean, and the report says how many were known.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from incidentbot.action_items import report as items
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ledger.models import Run
from incidentbot.runbooks.models import RunbookRun

# (name, start milestone, end milestone)
MEANS = (
    ("mtta", "detected", "acknowledged"),
    ("mttm", "impact_started", "mitigated"),
    ("mttr", "impact_started", "resolved"),
)
LABELS = {
    "mtta": "MTTA (detected → acknowledged)",
    "mttm": "MTTM (impact started → mitigated)",
    "mttr": "MTTR (impact started → resolved)",
}
GROUP_FIELDS = ("chain", "network", "component")
NOT_SET = "(not set)"


@dataclass
class Mean:
    seconds: float | None  # None: no incident had both milestones
    known: int  # incidents that had both, in order

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "known": self.known}


@dataclass
class Group:
    """Incidents sharing a severity, a field value or a month."""

    key: str
    incidents: int = 0
    resolved: int = 0
    means: dict[str, Mean] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "incidents": self.incidents,
            "resolved": self.resolved,
            **{name: m.to_json() for name, m in self.means.items()},
        }


@dataclass
class RunbookTally:
    runbook: str
    runs: int
    outcomes: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"runbook": self.runbook, "runs": self.runs, "outcomes": self.outcomes}


@dataclass
class Report:
    generated_at: datetime
    since: datetime | None
    until: datetime | None
    timezone: str
    overall: Group
    by_severity: list[Group]
    by_field: dict[str, list[Group]]
    by_month: list[Group]
    runs: int
    run_outcomes: dict[str, int]
    runbooks: list[RunbookTally]
    items_open: int
    items_overdue: int

    def to_json(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "timezone": self.timezone,
            "incidents": self.overall.to_json(),
            "by_severity": [g.to_json() for g in self.by_severity],
            "by_field": {k: [g.to_json() for g in v] for k, v in self.by_field.items()},
            "by_month": [g.to_json() for g in self.by_month],
            "runbook_runs": {
                "runs": self.runs,
                "outcomes": self.run_outcomes,
                "by_runbook": [t.to_json() for t in self.runbooks],
            },
            "action_items": {"open": self.items_open, "overdue": self.items_overdue},
        }


def _span(inc: Incident, start: str, end: str) -> float | None:
    a, b = inc.milestone(start), inc.milestone(end)
    if a is None or b is None or b < a:
        return None
    return (b - a).total_seconds()


def group(key: str, incidents: Iterable[Incident]) -> Group:
    rows = list(incidents)
    g = Group(key, len(rows), sum(1 for i in rows if i.resolved_at is not None))
    for name, start, end in MEANS:
        spans = [s for s in (_span(i, start, end) for i in rows) if s is not None]
        g.means[name] = Mean(sum(spans) / len(spans) if spans else None, len(spans))
    return g


def _grouped(rows: list[Incident], key: Any, order: list[str] | None = None) -> list[Group]:
    buckets: dict[str, list[Incident]] = {}
    for inc in rows:
        buckets.setdefault(key(inc), []).append(inc)
    keys = [k for k in (order or []) if k in buckets] + sorted(
        k for k in buckets if k not in (order or [])
    )
    return [group(k, buckets[k]) for k in keys]


def build(
    session: Session,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> Report:
    """Public incidents declared in ``[since, until)`` (all when not given), their runbook runs,
    and the action items open now."""
    now = now or utcnow()
    tz = ZoneInfo(settings.timezone)
    # A report is public: private incidents (and their runs and action items) stay out of it.
    rows = svc.public_incidents(session, declared_from=since, declared_before=until)
    severities = [s.name for s in settings.severities]
    by_field = {
        name: _grouped(rows, lambda i, n=name: (i.fields or {}).get(n) or NOT_SET)
        for name in GROUP_FIELDS
    }
    by_month = _grouped(rows, lambda i: i.declared_at.astimezone(tz).strftime("%Y-%m"))

    ids = [i.id for i in rows]
    runs = (
        list(
            session.exec(
                select(RunbookRun.runbook, Run.status)
                .join(Run, col(Run.id) == RunbookRun.run_id)
                .where(col(RunbookRun.incident_id).in_(ids))
            )
        )
        if ids
        else []
    )
    per_book: dict[str, Counter[str]] = {}
    for book, status in runs:
        per_book.setdefault(book, Counter())[status] += 1
    outcomes = Counter(status for _, status in runs)
    tally = items.report(session, settings, now=now)
    return Report(
        generated_at=now,
        since=since,
        until=until,
        timezone=settings.timezone,
        overall=group("all", rows),
        by_severity=_grouped(rows, lambda i: i.severity, severities),
        by_field=by_field,
        by_month=by_month,
        runs=len(runs),
        run_outcomes=dict(sorted(outcomes.items())),
        runbooks=[
            RunbookTally(b, sum(c.values()), dict(sorted(c.items())))
            for b, c in sorted(per_book.items())
        ],
        items_open=tally.open,
        items_overdue=tally.overdue,
    )
