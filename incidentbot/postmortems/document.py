"""Everything a postmortem document shows, read from the database into plain values.

:func:`build` reads the incident, its timeline, roles, pages, runbook runs, action items and
postmortem row in one session and returns a :class:`Document`; the templates only lay it out.
Nothing here reads the clock: the same rows give the same document, byte for byte. Times are
shown in the team's time zone (``settings.timezone``).

Runbook runs are described from what the application recorded (the timeline and the run's own
rows), not from the ledger's database-clock timings, and step outputs are left to the run's page:
params are shown masked, through each param's ``format_value``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from incidentbot.config import Settings
from incidentbot.durations import format_duration
from incidentbot.incidents import records
from incidentbot.incidents.models import ActionItem, Incident, RoleAssignment, TimelineEvent
from incidentbot.paging.models import Page
from incidentbot.postmortems import blameless, lifecycle
from incidentbot.postmortems import metrics as pm_metrics
from incidentbot.postmortems.models import PUBLISHED, Postmortem
from incidentbot.postmortems.people import BOT_ACTORS, Names, is_slack_id, plain_id
from incidentbot.runbooks import view as run_views
from incidentbot.runbooks.models import RunbookApproval, RunbookRun

# Timeline events that are bookkeeping, not part of the story.
NOISE = frozenset(
    {
        "slack.channel_created",
        "slack.header_posted",
        "slack.invited",
        "participant.joined",
        "runbook.step_started",
    }
)
CATEGORIES = {
    "status.changed": "status",
    "severity.changed": "severity",
    "milestone.set": "milestone",
    "note": "note",
    "slack.pinned": "pin",
    "status.update": "update",
    "effect.failed": "problem",
}
LABELS = {"pin": "Pinned", "update": "Status update", "note": "Note"}
RUN_ENDS = {
    "runbook.succeeded": "succeeded",
    "runbook.failed": "failed",
    "runbook.cancelled": "cancelled",
    "runbook.needs_attention": "needs attention",
}
STEP_WORDS = {
    "done": "done",
    "failed": "failed",
    "skipped": "skipped",
    "running": "running",
    "retrying": "retrying",
    "waiting": "waiting",
    "not_run": "not run",
    "unknown": "in doubt (may or may not have happened)",
}
RUN_WORDS = {
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "needs_attention": "needs attention",
    "awaiting_approval": "waiting for approval",
    "parked": "waiting",
    "pending": "queued",
    "running": "running",
}


# -- the document ------------------------------------------------------------------------------


@dataclass
class Entry:
    at: str
    actor: str
    category: str
    kind: str
    text: str

    @property
    def label(self) -> str:
        """A word for entries people wrote: pinned messages, status updates, notes."""
        return LABELS.get(self.category, "")


@dataclass
class Milestone:
    name: str
    label: str
    at: str | None


@dataclass
class SeverityRow:
    severity: str
    label: str
    duration: str
    note: str = ""


@dataclass
class SeverityChange:
    at: str
    before: str
    after: str
    by: str


@dataclass
class RoleRow:
    role: str
    person: str
    start: str
    end: str
    assigned_by: str


@dataclass
class Participant:
    name: str
    roles: list[str]
    first_seen: str
    events: int


@dataclass
class StepRow:
    number: int
    id: str
    label: str
    outcome: str
    status: str
    detail: str = ""
    attempts: int = 0
    rollback: bool = False


@dataclass
class RunDoc:
    run_id: int
    runbook: str
    description: str
    status: str
    outcome: str
    requested_by: str
    requested_at: str
    source: str
    target: str | None
    approval: str
    approvals: list[tuple[str, str, str]]  # (who, decision, at)
    params: list[tuple[str, str]]
    steps: list[StepRow]
    error: str | None
    finished_at: str | None
    duration: str | None
    link: str | None
    command: str


@dataclass
class PageRow:
    service: str
    number: str
    status: str
    requested_by: str
    requested_at: str
    acknowledged: str
    url: str | None
    message: str | None


@dataclass
class ActionRow:
    id: int
    text: str
    owner: str
    due: str
    priority: str
    status: str
    url: str | None


@dataclass
class SectionDoc:
    key: str
    title: str
    prompt: str
    text: str
    findings: list[blameless.Finding] = field(default_factory=list)

    @property
    def written(self) -> bool:
        return bool(self.text.strip())


@dataclass
class Link:
    label: str
    url: str | None
    command: str | None = None  # what to run where there is no link


@dataclass
class MetricRow:
    label: str
    span: str
    value: str
    state: str


@dataclass
class Document:
    ref: str
    title: str
    timezone: str
    incident_status: str
    severity: str
    severity_label: str
    worst_severity: str
    status: str  # the postmortem's: draft, in_review, published
    status_label: str
    required: bool
    requirement: str
    due: str | None
    owner: str | None
    published_at: str | None
    published_path: str | None
    declared_by: str
    commander: str | None
    description: str | None
    summary: str | None
    fields: list[tuple[str, str]]
    milestones: list[Milestone]
    impact: list[MetricRow]
    metrics: list[MetricRow]
    order_problems: list[str]
    severity_times: list[SeverityRow]
    severity_changes: list[SeverityChange]
    declared_severity: str
    declared_at: str
    roles: list[RoleRow]
    participants: list[Participant]
    timeline: list[Entry]
    runs: list[RunDoc]
    pages: list[PageRow]
    action_items: list[ActionRow]
    sections: list[SectionDoc]
    findings: list[blameless.Finding]
    links: list[Link]
    notices: list[str]
    event_count: int
    first_event: str | None
    last_event: str | None

    @property
    def sections_written(self) -> int:
        return sum(1 for s in self.sections if s.written)


# -- Slack text to plain text --------------------------------------------------------------------

_ANGLE = re.compile(r"<([^<>]+)>")


def plain_text(text: str, names: Names, ids: re.Pattern[str] | None = None) -> str:
    """Slack's markup as people read it: mentions as ``@Name``, channels as ``#name``, links
    as ``label (url)``; ``&lt;`` and friends unescaped. Bare user ids we know become names."""

    def angle(m: re.Match[str]) -> str:
        inner = m.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@") and is_slack_id(target[1:]):
            return "@" + names(target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!subteam^"):
            return label if label.startswith("@") else "@" + (label or target[9:])
        if target.startswith("!"):
            return "@" + target[1:]
        if re.match(r"^(https?|mailto):", target):
            return f"{label} ({target})" if label and label != target else target
        return m.group(0)

    out = _ANGLE.sub(angle, text) if "<" in text else text
    if ids is not None and ("U" in out or "W" in out):  # Slack user ids start with U or W
        out = ids.sub(lambda m: names(m.group(0)), out)
    return html.unescape(out) if "&" in out else out


# -- building ------------------------------------------------------------------------------------


class _Clock:
    """Times as the document shows them."""

    def __init__(self, timezone: str):
        self.tz = ZoneInfo(timezone)

    def __call__(self, when: datetime | None) -> str:
        if when is None:
            return "—"
        return when.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class _Rows:
    """The rows a document is built from."""

    postmortem: Postmortem
    events: list[TimelineEvent]
    roles: list[RoleAssignment]
    runs: list[RunbookRun]
    approvals: dict[int, list[RunbookApproval]]
    pages: list[Page]
    items: list[ActionItem]


def _load(
    session: Session, settings: Settings, incident: Incident, postmortem: Postmortem | None
) -> _Rows:
    roles = session.exec(
        select(RoleAssignment)
        .where(RoleAssignment.incident_id == incident.id)
        .order_by(col(RoleAssignment.started_at), col(RoleAssignment.id))
    )
    runs = list(
        session.exec(
            select(RunbookRun)
            .where(RunbookRun.incident_id == incident.id)
            .order_by(col(RunbookRun.id))
        )
    )
    pages = session.exec(select(Page).where(Page.incident_id == incident.id).order_by(col(Page.id)))
    items = session.exec(
        select(ActionItem).where(ActionItem.incident_id == incident.id).order_by(col(ActionItem.id))
    )
    events = records.timeline(session, incident)
    return _Rows(
        postmortem=postmortem or lifecycle.current(session, settings, incident, events),
        events=events,
        roles=list(roles),
        runs=runs,
        approvals=_approvals(session, runs),
        pages=list(pages),
        items=list(items),
    )


_MENTIONED = re.compile(r"<@([UW][A-Z0-9]+)")


def _actors(rows: _Rows, incident: Incident) -> set[str]:
    """Everyone the document names: actors, role holders, requesters, approvers, owners, and
    people mentioned in what was recorded or written."""
    actors: set[str] = {e.actor for e in rows.events}
    actors.update(r.user for r in rows.roles)
    actors.update(r.assigned_by for r in rows.roles)
    actors.update(r.requester for r in rows.runs)
    actors.update(a.user for found in rows.approvals.values() for a in found)
    actors.update(p.requested_by for p in rows.pages)
    actors.update(i.owner for i in rows.items if i.owner)
    actors.update(x for x in (incident.commander, incident.declared_by, rows.postmortem.owner) if x)
    for ev in rows.events:
        actors.update(_MENTIONED.findall(ev.summary))
    for text in (rows.postmortem.sections or {}).values():
        actors.update(_MENTIONED.findall(str(text)))
    return actors


def people_in(session: Session, settings: Settings, incident: Incident) -> set[str]:
    """The actors and people the incident's postmortem names (to look their names up)."""
    return _actors(_load(session, settings, incident, None), incident)


def build(
    session: Session,
    settings: Settings,
    incident: Incident,
    *,
    postmortem: Postmortem | None = None,
    names: Names | None = None,
) -> Document:
    """Read everything the postmortem of ``incident`` shows. ``postmortem`` defaults to the
    stored row (or the draft it would start as); ``names`` to the Person table."""
    rows = _load(session, settings, incident, postmortem)
    row, events, roles, run_rows = rows.postmortem, rows.events, rows.roles, rows.runs
    approvals, pages, items = rows.approvals, rows.pages, rows.items
    fmt = _Clock(settings.timezone)
    actors = _actors(rows, incident)
    # Actors that are not people: the bot, PagerDuty without an agent, Alertmanager.
    system = {*BOT_ACTORS, "pagerduty", "unknown", settings.alerts.actor}
    if names is None:
        names = Names.load(session, actors)
    known_ids = sorted(
        {plain_id(a) for a in actors if is_slack_id(a) and plain_id(a) in names.people}
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
        _run_doc(session, settings, r, approvals.get(r.id or 0, []), events, names, fmt, text)
        for r in run_rows
    ]
    run_by_id = {r.run_id: r for r in run_docs}

    story = [ev for ev in events if ev.kind not in NOISE and not _is_postmortem(ev.kind)]
    timeline = [
        Entry(
            at=fmt(ev.occurred_at),
            actor=names(ev.actor),
            category=_category(ev.kind),
            kind=ev.kind,
            text=_describe(ev, run_by_id, text, names, role_labels),
        )
        for ev in story
    ]

    # sections and the language check
    sections = [
        SectionDoc(s.key, s.title, s.prompt, str((row.sections or {}).get(s.key) or ""))
        for s in lifecycle.SECTIONS
    ]
    known = set(names.known_names())
    known.update(names(a) for a in actors if a and a not in system)
    known.update(a for a in actors if a and not is_slack_id(a) and a not in system)
    findings = blameless.check_sections(
        {s.key: s.text for s in sections}, settings.postmortems.blameless, sorted(known)
    )
    findings = [
        blameless.Finding(f.section, f.line, text(f.phrase), f.kind, text(f.excerpt), f.suggestion)
        for f in findings
    ]
    for s in sections:
        s.findings = [f for f in findings if f.section == s.key]
        s.text = text(s.text)

    problems = pm_metrics.order_problems(incident, fmt)
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

    participants = _participants(
        events, roles, run_rows, approvals, names, role_labels, fmt, system
    )
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
                fmt(incident.milestone(name)) if incident.milestone(name) else None,
            )
            for name, label in pm_metrics.LABELS.items()
        ],
        impact=[_metric_row(s) for s in pm_metrics.impact_spans(incident, fmt)],
        metrics=[_metric_row(s) for s in pm_metrics.response_metrics(incident, fmt)],
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
        action_items=[
            ActionRow(
                id=i.id or 0,
                text=text(i.text),
                owner=names(i.owner) if i.owner else "—",
                due=i.due_date.isoformat() if i.due_date else "—",
                priority=i.priority,
                status=i.status.replace("_", " "),
                url=i.external_url,
            )
            for i in items
        ],
        sections=sections,
        findings=findings,
        links=_links(incident, pages, run_docs, items),
        notices=notices,
        event_count=len(story),
        first_event=fmt(story[0].occurred_at) if story else None,
        last_event=fmt(story[-1].occurred_at) if story else None,
    )


def _category(kind: str) -> str:
    if kind in CATEGORIES:
        return CATEGORIES[kind]
    head = kind.split(".", 1)[0]
    return {
        "incident": "incident",
        "role": "role",
        "page": "page",
        "runbook": "runbook",
        "alert": "alert",
    }.get(head, "other")


def _metric_row(s: pm_metrics.Span) -> MetricRow:
    return MetricRow(s.label, s.span_label, s.text, s.state)


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


def _approvals(session: Session, rows: list[RunbookRun]) -> dict[int, list[RunbookApproval]]:
    ids = [r.id for r in rows if r.id is not None]
    out: dict[int, list[RunbookApproval]] = {}
    if not ids:
        return out
    stmt = (
        select(RunbookApproval)
        .where(col(RunbookApproval.runbook_run_id).in_(ids))
        .order_by(col(RunbookApproval.at), col(RunbookApproval.id))
    )
    for a in session.exec(stmt):
        out.setdefault(a.runbook_run_id, []).append(a)
    return out


def _run_doc(
    session: Session,
    settings: Settings,
    row: RunbookRun,
    approvals: list[RunbookApproval],
    events: list[TimelineEvent],
    names: Names,
    fmt: _Clock,
    text: Callable[[str], str],
) -> RunDoc:
    view = run_views.load(session, row.run_id)
    ended = next(
        (e for e in events if e.kind in RUN_ENDS and e.data.get("run_id") == row.run_id), None
    )
    steps = []
    for number, st in enumerate(view.steps, start=1):
        status = "not_run" if st.status == "waiting" and view.ended else st.status
        detail = ""
        if st.status == "skipped":
            detail = str((st.output or {}).get("reason") or st.error or "")
        elif st.status in ("failed", "retrying", "unknown") and st.error:
            detail = st.error
        steps.append(
            StepRow(
                number=number,
                id=st.id,
                label=st.label,
                outcome=STEP_WORDS.get(status, status.replace("_", " ")),
                status=status,
                detail=text(detail),
                attempts=st.attempts,
                rollback=st.rollback,
            )
        )
    need = {
        "none": "none",
        "commander": "the incident commander",
        "two-person": "two people",
    }.get(row.approval, row.approval)
    link = None
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    if settings.http.public_url and token:
        from incidentbot.web import run_page

        link = run_page.link(settings.http.public_url, run_page.signing_key(token), row.run_id)
    duration = None
    if ended is not None:
        duration = format_duration(ended.occurred_at - row.created_at)
    return RunDoc(
        run_id=row.run_id,
        runbook=row.runbook,
        description=view.description,
        status=view.status,
        outcome=RUN_WORDS.get(view.status, view.status.replace("_", " ")),
        requested_by=names(row.requester),
        requested_at=fmt(row.created_at),
        source=row.source,
        target=view.target,
        approval=need,
        approvals=[(names(a.user), a.decision, fmt(a.at)) for a in approvals],
        params=list(view.params.items()),
        steps=steps,
        error=text(view.error) if view.error else None,
        finished_at=fmt(ended.occurred_at) if ended is not None else None,
        duration=duration,
        link=link,
        command=f"incidentbot runs show {row.run_id}",
    )


_RETRY_DELAY = re.compile(r", retrying in \d+s:")


def _describe(
    ev: TimelineEvent,
    runs: dict[int, RunDoc],
    text: Callable[[str], str],
    names: Names,
    role_labels: dict[str, str],
) -> str:
    """The event as the document says it. Role changes name the role by its label; runbook
    events are said from their data (their stored summaries carry timings measured on the
    database clock)."""
    kind = ev.kind
    if kind in ("role.assigned", "role.handover", "role.unassigned") and ev.data.get("user"):
        role = role_labels.get(str(ev.data.get("role")), str(ev.data.get("role")))
        who = names(str(ev.data["user"]))
        if kind == "role.unassigned":
            return f"{who} is no longer {role.lower()}"
        previous = ev.data.get("previous")
        return f"{who} is {role.lower()}" + (
            f" (handover from {names(str(previous))})" if previous else ""
        )
    if not kind.startswith("runbook.") or kind == "runbook.suggested":
        return text(ev.summary)
    run_id = ev.data.get("run_id")
    run = runs.get(run_id) if isinstance(run_id, int) else None
    name = f"{ev.data.get('runbook', run.runbook if run else 'runbook')} (run {run_id})"
    if kind == "runbook.approval_requested":
        need = run.approval if run else "an approver"
        return f"Runbook {name} waits for approval by {need}"
    if kind in RUN_ENDS:
        why = f": {run.error}" if run and run.error and kind != "runbook.succeeded" else ""
        return f"Runbook {name} {RUN_ENDS[kind]}{why}"
    step_id = ev.data.get("step")
    if step_id and kind.startswith("runbook.step_"):
        label = next((s.label for s in (run.steps if run else []) if s.id == step_id), step_id)
        where = f"Runbook {name} step “{label}”"
        output = ev.data.get("output") or {}
        if kind == "runbook.step_succeeded":
            return f"{where}: done"
        if kind == "runbook.step_skipped" and ev.actor in BOT_ACTORS:
            reason = output.get("reason") if isinstance(output, dict) else None
            return f"{where}: skipped" + (f" ({text(str(reason))})" if reason else "")
        if kind == "runbook.step_failed":
            step = next((s for s in (run.steps if run else []) if s.id == step_id), None)
            if step is not None and step.detail:
                return f"{where}: failed: {step.detail}"
        if kind == "runbook.step_retrying":
            return text(_RETRY_DELAY.sub(", retrying:", ev.summary))
    return text(ev.summary)


def _participants(
    events: list[TimelineEvent],
    roles: list[RoleAssignment],
    runs: list[RunbookRun],
    approvals: dict[int, list[RunbookApproval]],
    names: Names,
    role_labels: dict[str, str],
    fmt: _Clock,
    system: set[str],
) -> list[Participant]:
    first: dict[str, datetime] = {}
    counts: dict[str, int] = {}
    held: dict[str, list[str]] = {}

    def seen(actor: str | None, when: datetime) -> str | None:
        who = plain_id(actor)
        if not who or who in system:
            return None
        if who not in first or when < first[who]:
            first[who] = when
        return who

    for ev in events:
        if (ev.kind in NOISE and ev.kind != "participant.joined") or _is_postmortem(ev.kind):
            continue
        who = seen(ev.actor, ev.occurred_at)
        if who and ev.kind != "participant.joined":
            counts[who] = counts.get(who, 0) + 1
    for r in roles:
        who = seen(r.user, r.started_at)
        if who:
            label = role_labels.get(r.role, r.role)
            if label not in held.setdefault(who, []):
                held[who].append(label)
    for run in runs:
        seen(run.requester, run.created_at)
        for a in approvals.get(run.id or 0, []):
            seen(a.user, a.at)
    # One row per name: a Slack id and the PagerDuty name of the same person are one person.
    merged: dict[str, tuple[datetime, list[str], int, str]] = {}
    for w in sorted(first, key=lambda w: (first[w], w)):
        key = names(w).casefold()
        when, roles_held, n, shown = merged.get(key, (first[w], [], 0, names(w)))
        roles_held = roles_held + [r for r in held.get(w, []) if r not in roles_held]
        merged[key] = (min(when, first[w]), roles_held, n + counts.get(w, 0), shown)
    rows = sorted(merged.values(), key=lambda m: (m[0], m[3].casefold()))
    return [Participant(shown, roles_held, fmt(when), n) for when, roles_held, n, shown in rows]


def _is_postmortem(kind: str) -> bool:
    return kind.startswith("postmortem.")


def _page_row(page: Page, names: Names, fmt: _Clock, text: Callable[[str], str]) -> PageRow:
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
