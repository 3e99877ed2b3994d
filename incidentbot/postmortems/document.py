"""Everything a postmortem document shows, read from the database into plain values.

:func:`build` reads the incident, its timeline, roles, pages, runbook runs, action items and
postmortem row in one session (:mod:`~incidentbot.postmortems.rows`) and returns a
:class:`~incidentbot.postmortems.contents.Document`; the templates only lay it out. Nothing
here reads the clock but which action items are overdue (``today``): the same rows and day
give the same document, byte for byte. Times are shown in
the team's time zone (``settings.timezone``).

The timeline is told by :mod:`~incidentbot.postmortems.timeline`, runbook runs by
:mod:`~incidentbot.postmortems.runs`, the people who took part by
:mod:`~incidentbot.postmortems.participants`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session

from incidentbot.action_items.due import today as team_today
from incidentbot.action_items.report import is_overdue
from incidentbot.config import Settings
from incidentbot.durations import format_duration
from incidentbot.incidents.models import ActionItem, Incident
from incidentbot.paging.models import Page
from incidentbot.people import BOT_ACTORS, Directory, is_slack_id, plain_id
from incidentbot.people.render import plain_text
from incidentbot.postmortems import chain, lifecycle
from incidentbot.postmortems import impact_numbers as pm_impact
from incidentbot.postmortems import metrics as pm_metrics
from incidentbot.postmortems import participants as pm_participants
from incidentbot.postmortems import quoted as pm_quoted
from incidentbot.postmortems import rows as pm_rows
from incidentbot.postmortems import runs as pm_runs
from incidentbot.postmortems import timeline as pm_timeline
from incidentbot.postmortems.contents import (
    ActionRow,
    Document,
    Link,
    MetricRow,
    Milestone,
    PageRow,
    RoleRow,
    RunDoc,
    SectionDoc,
    SeverityChange,
    SeverityRow,
)
from incidentbot.postmortems.heap import collector_paused
from incidentbot.postmortems.models import PUBLISHED, Postmortem
from incidentbot.postmortems.names import once_per_actor


class _Clock:
    """Times as the document shows them."""

    def __init__(self, timezone: str):
        self.tz = ZoneInfo(timezone)

    def __call__(self, when: datetime | None) -> str:
        if when is None:
            return "—"
        # 2025-03-11 10:52:00: the local time without its offset (sliced off, not replaced).
        return when.astimezone(self.tz).isoformat(" ", "seconds")[:19]


def people_in(session: Session, settings: Settings, incident: Incident) -> set[str]:
    """The actors and people the incident's postmortem names (to look their names up)."""
    return pm_participants.actors(pm_rows.load(session, settings, incident, None), incident)


def build(
    session: Session,
    settings: Settings,
    incident: Incident,
    *,
    postmortem: Postmortem | None = None,
    names: Directory | None = None,
    today: date | None = None,
) -> Document:
    """Read everything the postmortem of ``incident`` shows. ``postmortem`` defaults to the
    stored row (or the draft it would start as); ``names`` to the Person table; ``today``
    (which action items are overdue) to today in the team's time zone."""
    with collector_paused():
        return _build(session, settings, incident, postmortem, names, today)


def _build(
    session: Session,
    settings: Settings,
    incident: Incident,
    postmortem: Postmortem | None,
    names: Directory | None,
    today: date | None,
) -> Document:
    if today is None:
        today = team_today(settings.timezone)
    rows = pm_rows.load(session, settings, incident, postmortem)
    row, events, roles, run_rows = rows.postmortem, rows.events, rows.roles, rows.runs
    approvals, pages, items = rows.approvals, rows.pages, rows.items
    fmt = _Clock(settings.timezone)
    actors = pm_participants.actors(rows, incident)
    # Actors that are not people: the bot, PagerDuty without an agent, Alertmanager.
    system = {*BOT_ACTORS, "pagerduty", "unknown", settings.alerts.actor}
    if names is None:
        names = Directory.load(session, settings.people, actors)
    names = once_per_actor(names)  # each person resolved once, not once per entry
    known_ids = sorted(
        {plain_id(a) for a in actors if is_slack_id(a) and names.find(a) is not None}
    )
    ids_re = (
        re.compile(r"(?<![\w@])(?:slack:)?(?:" + "|".join(map(re.escape, known_ids)) + r")(?!\w)")
        if known_ids
        else None
    )

    def text(s: str) -> str:
        return plain_text(s, names, ids_re)

    role_labels = {r.name: r.label for r in settings.roles}
    sev_labels = {s.name: s.label for s in settings.severities}
    status_labels = {s.name: s.label for s in settings.statuses}
    order = settings.severity_names()

    # severity
    sev_times, changes = pm_metrics.severity_times(events, order)
    declared_sev = next(
        (str(e.data.get("severity")) for e in events if e.kind == "incident.declared"),
        incident.severity,
    )
    worst = pm_metrics.worst_severity(events, incident.severity, order)

    # runs
    run_docs = [
        pm_runs.run_doc(
            session, settings, r, approvals.get(r.id or 0, []), events, names, fmt, text
        )
        for r in run_rows
    ]
    run_by_id = {r.run_id: r for r in run_docs}

    story = pm_timeline.story(events)
    timeline = pm_timeline.entries(story, fmt, run_by_id, text, names, role_labels)

    # sections and the language check
    sections = [
        SectionDoc(s.key, s.title, s.prompt, str((row.sections or {}).get(s.key) or ""))
        for s in lifecycle.sections_for(settings)
    ]
    known = set(names.known_names())
    known.update(names(a) for a in actors if a and a not in system)
    known.update(a for a in actors if a and not is_slack_id(a) and a not in system)
    findings = pm_quoted.findings(
        settings.postmortems.blameless,
        sorted(known),
        sections,
        [
            (f"As declared by {names(incident.declared_by)}", incident.description or ""),
            ("Resolution summary", incident.resolution_summary or ""),
        ],
        [e for e in timeline if e.label],
        [(f"Action item {i.id}", i.text) for i in items],
        text,
    )
    for s in sections:
        s.findings = [f for f in findings if f.section == s.key]
        s.text = text(s.text)

    times = pm_metrics.sourced(incident, events, settings.alerts.actor)

    def source_of(name: str) -> str:
        who = times.setters.get(name)
        if who and times.via.get(name) == "resolve":
            return f"given at resolve by {names(who)}"
        return f"set by {names(who)}" if who else times.source.get(name, "not recorded")

    def metric_row(sp: pm_metrics.Span) -> MetricRow:
        froms = f"{pm_metrics.LABELS[sp.start]}: {source_of(sp.start)}; "
        froms += f"{pm_metrics.LABELS[sp.end]}: {source_of(sp.end)}"
        return MetricRow(sp.label, sp.span_label, sp.text, sp.state, froms)

    problems = pm_metrics.order_problems(incident, fmt, times.at)
    notices = []
    if incident.status not in ("resolved", "closed"):
        shown_status = status_labels.get(incident.status, incident.status)
        notices.append(
            f"{incident.ref} is not resolved yet ({shown_status}): "
            "this draft will change as the incident goes on."
        )
    if problems:
        notices.append(
            "Milestones out of order: "
            + "; ".join(problems)
            + f". Correct them with `incidentbot incident milestone {incident.ref} NAME WHEN`."
        )
    if findings:
        n = len(findings)
        notices.append(
            f"Language check: {n} passage{'s' if n != 1 else ''} may read as blaming people "
            "(see “Language check” below)."
        )

    participants = pm_participants.participants(rows, names, role_labels, fmt, system)
    return Document(
        ref=incident.ref,
        title=incident.title,
        timezone=settings.timezone,
        incident_status=status_labels.get(incident.status, incident.status),
        severity=incident.severity,
        severity_label=sev_labels.get(incident.severity, ""),
        worst_severity=worst,
        status=row.status,
        status_label=lifecycle.STATUS_LABELS.get(row.status, row.status),
        required=row.required,
        requirement=lifecycle.requirement(session, settings, incident, events)[1],
        due=row.due_date.isoformat() if row.due_date else None,
        owner=names(row.owner) if row.owner else None,
        published_at=fmt(row.published_at) if row.published_at else None,
        published_path=row.published_path if row.status == PUBLISHED else None,
        declared_by=names(incident.declared_by),
        commander=names(incident.commander) if incident.commander else None,
        description=text(incident.description) if incident.description else None,
        summary=text(incident.resolution_summary) if incident.resolution_summary else None,
        fields=_fields(settings, incident),
        milestones=[
            Milestone(
                name,
                label.capitalize(),
                fmt(times.at[name]) if times.at[name] else None,
                source_of(name),
            )
            for name, label in pm_metrics.LABELS.items()
        ],
        impact=[metric_row(s) for s in pm_metrics.impact_spans(incident, fmt, times.at)]
        + chain.chain_rows(events),
        impact_numbers=pm_impact.rows(row.impact, events, names, fmt),
        metrics=[metric_row(s) for s in pm_metrics.response_metrics(incident, fmt, times.at)],
        detection=[
            (fmt(ev.occurred_at), text(ev.summary)) for ev in events if ev.kind == "alert.firing"
        ],
        order_problems=problems,
        severity_times=[
            SeverityRow(
                t.severity,
                sev_labels.get(t.severity, ""),
                format_duration(t.total),
                f"still {t.severity} since {fmt(t.open_since)}: not resolved"
                if t.open_since
                else "",
            )
            for t in sev_times
        ],
        severity_changes=[
            SeverityChange(fmt(ev.occurred_at), before, after, names(ev.actor))
            for ev, before, after in changes
        ],
        declared_severity=declared_sev,
        declared_at=fmt(incident.declared_at),
        roles=[
            RoleRow(
                role_labels.get(r.role, r.role),
                names(r.user),
                fmt(r.started_at),
                fmt(r.ended_at) if r.ended_at else "—",
                names(r.assigned_by),
            )
            for r in roles
        ],
        participants=participants,
        timeline=timeline,
        runs=run_docs,
        pages=[_page_row(p, names, fmt, text) for p in pages],
        action_items=[_action_row(i, today, names, text) for i in items],
        sections=sections,
        findings=findings,
        links=_links(incident, pages, run_docs, items),
        notices=notices,
        event_count=len(events),
        shown_count=len(story),
        first_event=fmt(story[0][0]) if story else None,
        last_event=fmt(story[-1][0]) if story else None,
    )


def _action_row(
    item: ActionItem, today: date, names: Directory, text: Callable[[str], str]
) -> ActionRow:
    late = (today - item.due_date).days if is_overdue(item, today) and item.due_date else 0
    status = item.status.replace("_", " ")
    if late:
        status = f"overdue by {late} day{'s' if late != 1 else ''}"
    return ActionRow(
        id=item.id or 0,
        text=text(item.text),
        owner=names(item.owner) if item.owner else "—",
        due=item.due_date.isoformat() if item.due_date else "—",
        priority=item.priority,
        status=status,
        url=item.external_url,
        overdue_days=late,
    )


def _fields(settings: Settings, incident: Incident) -> list[tuple[str, str]]:
    values = dict(incident.fields or {})
    out = []
    for spec in settings.fields:
        if values.get(spec.name):
            out.append((spec.label, str(values.pop(spec.name))))
    for key in sorted(values):
        if values[key]:
            out.append((key.replace("_", " ").capitalize(), str(values[key])))
    return out


def _page_row(page: Page, names: Directory, fmt: _Clock, text: Callable[[str], str]) -> PageRow:
    ack = "—"
    if page.acknowledged_at is not None:
        ack = f"{page.acknowledged_by or 'someone'} at {fmt(page.acknowledged_at)}"
    return PageRow(
        service=page.service,
        number=f"#{page.number}" if page.number is not None else "—",
        status=page.status,
        requested_by=names(page.requested_by),
        requested_at=fmt(page.requested_at),
        acknowledged=ack,
        url=page.url,
        message=text(page.message) if page.message else None,
    )


def _links(
    incident: Incident, pages: list[Page], runs: list[RunDoc], items: list[ActionItem]
) -> list[Link]:
    out = []
    if incident.channel_id:
        out.append(
            Link(
                f"Incident channel #{incident.channel_name or incident.channel_id}",
                f"https://slack.com/app_redirect?channel={incident.channel_id}",
            )
        )
    for p in pages:
        if p.url:
            out.append(Link(f"PagerDuty incident #{p.number} ({p.service})", p.url))
    for r in runs:
        label = f"Runbook run {r.run_id} ({r.runbook})"
        out.append(Link(label, r.link, None if r.link else r.command))
    for i in items:
        if i.external_url:
            out.append(Link(f"Action item {i.id}", i.external_url))
    return out
