"""Building the on-call handoff for a shift, and rendering it from its template.

A rotation's shifts change hands at the times its cron gives. The handoff at ``now`` is the one
due at the latest slot at or before ``now`` (``handoff_at``); it covers the shift that ended
there, extended to ``now`` so nothing that happened since is left out: the window is
``[slot before handoff_at, now]``. The outgoing on-call is who PagerDuty has just before
``handoff_at``, the incoming one who it has at ``handoff_at``; both are matched to Slack users
by email.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from incidentbot import db, policy
from incidentbot.action_items import service as items
from incidentbot.alerts.models import AlertGroup, AlertRecord
from incidentbot.chat_text import mention as chat_mention
from incidentbot.chat_text import mrkdwn, when
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.durations import format_duration
from incidentbot.handoff import notes as handoff_notes
from incidentbot.handoff.config import Rotation, cron_trigger
from incidentbot.incidents.models import Incident
from incidentbot.ledger.redact import redact_text
from incidentbot.people import Directory
from incidentbot.ports import Chat, ExternalError, OnCall, Pager
from incidentbot.postmortems.models import PUBLISHED, Postmortem
from incidentbot.template_files import TEMPLATES as SHIPPED_TEMPLATES
from incidentbot.template_files import override_loader

log = logging.getLogger(__name__)

TEMPLATES = SHIPPED_TEMPLATES  # the shipped templates (incidentbot.template_files)
LOOKBACKS = (timedelta(days=1), timedelta(days=8), timedelta(days=32), timedelta(days=367))
LIST_LIMIT = 15  # lines per section; the rest is counted ("and 4 more")


# -- shifts ------------------------------------------------------------------------------------


def _latest_slot(rotation: Rotation, moment: datetime) -> datetime:
    """The latest handoff slot at or before ``moment``."""
    trigger = cron_trigger(rotation.cron, rotation.timezone)
    for back in LOOKBACKS:
        last = None
        fire = trigger.get_next_fire_time(None, moment - back)
        while fire is not None and fire <= moment:
            last = fire
            fire = trigger.get_next_fire_time(last, last + timedelta(seconds=1))
        if last is not None:
            return last
    raise ValueError(f"rotation {rotation.name!r}: cron {rotation.cron!r} has no slot in a year")


@dataclass(frozen=True)
class Shift:
    start: datetime  # the slot before ``handoff_at``
    handoff_at: datetime  # the latest slot at or before ``end``
    end: datetime  # now

    def contains(self, moment: datetime | None) -> bool:
        return moment is not None and self.start <= moment <= self.end


def shift_at(rotation: Rotation, now: datetime) -> Shift:
    handoff_at = _latest_slot(rotation, now)
    start = _latest_slot(rotation, handoff_at - timedelta(seconds=1))
    return Shift(start=start, handoff_at=handoff_at, end=now)


# A handoff is due for this long after its slot (the scheduled post's window): a preview then
# shows it; later, the shift in progress is what the next handoff will carry.
DUE_FOR = timedelta(hours=1)


def upcoming_shift(rotation: Rotation, now: datetime) -> Shift:
    """The shift a preview at ``now`` frames: the handoff due now when its slot was less than
    :data:`DUE_FOR` ago; otherwise the shift in progress, from the latest slot to the next one,
    covered to ``now`` (not the shift that ended at the latest slot, days ago)."""
    latest = _latest_slot(rotation, now)
    if now - latest < DUE_FOR:
        return shift_at(rotation, now)
    trigger = cron_trigger(rotation.cron, rotation.timezone)
    nxt = trigger.get_next_fire_time(None, now + timedelta(seconds=1))
    if nxt is None:
        return shift_at(rotation, now)
    return Shift(start=latest, handoff_at=nxt, end=now)


# -- who ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    name: str
    email: str | None = None
    slack_id: str | None = None

    @property
    def mention(self) -> str:
        """A mention when Slack knows the person, else the name PagerDuty gave, shown as is."""
        return chat_mention(self.slack_id) if self.slack_id else mrkdwn(self.name)


def _oncall_at(pager: Pager, rotation: Rotation, moment: datetime) -> list[OnCall]:
    """Who the rotation reaches at ``moment`` (a schedule's on-call, or a policy's level 1)."""
    rows = pager.oncalls(
        [rotation.escalation_policy_id] if rotation.escalation_policy_id else [],
        since=moment,
        until=moment + timedelta(seconds=1),
        schedule_ids=[rotation.schedule_id] if rotation.schedule_id else None,
    )
    found: dict[str, OnCall] = {}
    for row in rows:
        if rotation.escalation_policy_id and row.level != 1:
            continue
        if row.start is not None and row.start > moment:
            continue
        if row.end is not None and row.end <= moment:
            continue
        found.setdefault((row.email or row.name).lower(), row)
    return list(found.values())


def pager_shift(rotation: Rotation, now: datetime, pager: Pager) -> Shift | None:
    """The shift by PagerDuty: the current on-call's shift started at ``handoff_at``, the
    previous one's at ``start``; None when nobody is on call (ExternalError: no answer)."""
    starts = [r.start for r in _oncall_at(pager, rotation, now) if r.start is not None]
    if not starts:
        return None
    handoff_at = max(starts)
    before = [
        r.start
        for r in _oncall_at(pager, rotation, handoff_at - timedelta(seconds=1))
        if r.start is not None
    ]
    start = min(before) if before else handoff_at - timedelta(days=7)
    return Shift(start=start, handoff_at=handoff_at, end=now)


def shift_for(rotation: Rotation, now: datetime, pager: Pager | None) -> Shift:
    """The shift handed over at ``now``: by the cron, or (``shift_change``) by PagerDuty,
    falling back to the cron when nobody is on call."""
    if not rotation.shift_change or pager is None:
        return shift_at(rotation, now)
    return pager_shift(rotation, now, pager) or shift_at(rotation, now)


def _person(
    chat: Chat | None, row: OnCall, problems: list[str], people: Directory | None = None
) -> Person:
    """The on-call PagerDuty names, as the people directory knows them (matched by email),
    else as Slack knows their email, else by PagerDuty's name."""
    known = people.by_email(row.email) if people is not None else None
    if known is not None and (known.slack_id or chat is None):
        return Person(known.name, row.email, known.slack_id)
    if chat is None or not row.email:
        return Person(row.name, row.email)
    try:
        user = chat.user_by_email(row.email)
    except ExternalError as exc:
        problems.append(f"Slack did not answer for {row.name} ({exc.code})")
        return Person(row.name, row.email)
    if user is None or user.deleted:
        problems.append(f"no Slack user has {row.name}'s PagerDuty email")
        return Person(row.name, row.email)
    return Person(known.name if known else row.name, row.email, user.id)


# -- the handoff -------------------------------------------------------------------------------


@dataclass
class Handoff:
    rotation: Rotation
    shift: Shift
    outgoing: list[Person] = field(default_factory=list)
    incoming: list[Person] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # PagerDuty or Slack did not answer
    open_incidents: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    open_items: int = 0
    overdue_items: list[dict[str, Any]] = field(default_factory=list)
    postmortems_due: list[dict[str, Any]] = field(default_factory=list)
    alert_count: int = 0
    alert_groups: list[dict[str, Any]] = field(default_factory=list)
    alert_group_count: int = 0
    notes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def incoming_ids(self) -> list[str]:
        return [p.slack_id for p in self.incoming if p.slack_id]


def _group_name(group: AlertGroup) -> str:
    labels = group.group_labels or {}
    if not labels:
        return "(ungrouped)"
    if set(labels) == {"alertname"}:
        return labels["alertname"]
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _collect(s: Session, settings: Settings, h: Handoff, tz: ZoneInfo, people: Directory) -> None:
    shift, now = h.shift, h.shift.end

    def mention(actor: str | None) -> str:
        return chat_mention(actor, people)

    terminal = policy.terminal_statuses(settings)
    for inc in s.exec(
        select(Incident).where(col(Incident.status).not_in(terminal)).order_by(col(Incident.number))
    ):
        h.open_incidents.append(
            {
                "ref": inc.ref,
                "title": inc.title,
                "severity": inc.severity,
                "status": inc.status,
                "age": format_duration(now - inc.declared_at),
                "commander": mention(inc.commander),
                "new": shift.contains(inc.declared_at),
                "channel": f"<#{inc.channel_id}>" if inc.channel_id else None,
            }
        )
    for inc in s.exec(
        select(Incident)
        .where(col(Incident.resolved_at).is_not(None))
        .where(col(Incident.resolved_at) >= shift.start)
        .where(col(Incident.resolved_at) <= now)
        .order_by(col(Incident.resolved_at), col(Incident.number))
    ):
        assert inc.resolved_at is not None
        h.resolved.append(
            {
                "ref": inc.ref,
                "title": inc.title,
                "severity": inc.severity,
                "status": inc.status,
                "resolved_at": when(inc.resolved_at, tz),
                "took": format_duration(inc.resolved_at - inc.declared_at),
                "commander": mention(inc.commander),
            }
        )
    open_views = items.list_items(s, settings, now=now)
    h.open_items = len(open_views)
    for v in open_views:
        if v.overdue:
            due = v.item.due_date
            h.overdue_items.append(
                {
                    "id": v.item.id,
                    "incident": v.incident_ref,
                    "text": redact_text(v.item.text),
                    "owner": mention(v.item.owner) if v.item.owner else "no owner",
                    "due": due.isoformat() if due else "",
                }
            )
    today = now.astimezone(ZoneInfo(settings.timezone)).date()
    rows = s.exec(
        select(Postmortem, Incident)
        .join(Incident, col(Incident.id) == Postmortem.incident_id)
        .where(Postmortem.status != PUBLISHED)
        .where(col(Postmortem.due_date).is_not(None))
        .order_by(col(Postmortem.due_date), col(Incident.number))
    )
    for pm, inc in rows:
        due: date = pm.due_date  # type: ignore[assignment]
        h.postmortems_due.append(
            {
                "incident": inc.ref,
                "title": inc.title,
                "due": due.isoformat(),
                "overdue": due < today,
                "status": pm.status.replace("_", " "),
                "owner": mention(pm.owner) if pm.owner else "no owner",
            }
        )
    alerts = list(
        s.exec(
            select(AlertRecord, AlertGroup)
            .join(AlertGroup, col(AlertGroup.id) == AlertRecord.group_id)
            .where(col(AlertRecord.first_received_at) >= shift.start)
            .where(col(AlertRecord.first_received_at) <= now)
        )
    )
    h.alert_count = len(alerts)
    per_group = Counter(_group_name(g) for _, g in alerts)
    h.alert_group_count = len(per_group)
    top = sorted(per_group.items(), key=lambda kv: (-kv[1], kv[0]))
    h.alert_groups = [
        {"name": name, "count": n} for name, n in top[: settings.handoff.top_alert_groups]
    ]
    for note in handoff_notes.notes_between(s, h.rotation.name, shift.start, now):
        h.notes.append(
            {"by": mention(note.by), "at": when(note.at, tz), "text": redact_text(note.text)}
        )


def build(
    engine: Engine,
    settings: Settings,
    rotation: Rotation,
    *,
    pager: Pager | None,
    chat: Chat | None,
    now: datetime | None = None,
    shift: Shift | None = None,
    upcoming: bool = False,
) -> Handoff:
    """Everything the handoff message says, for the shift ending at ``now`` (``upcoming``: the
    shift a preview frames, see :func:`upcoming_shift`)."""
    now = now or utcnow()
    tz = ZoneInfo(rotation.timezone)
    problems: list[str] = []
    if shift is None and upcoming and not (rotation.shift_change and pager is not None):
        shift = upcoming_shift(rotation, now)
    if shift is None:
        try:
            shift = shift_for(rotation, now, pager)
        except ExternalError as exc:
            problems.append(f"PagerDuty did not answer ({exc.code}); shifts follow the cron")
            shift = shift_at(rotation, now)
    handoff = Handoff(rotation, shift, problems=problems)
    if pager is None:
        handoff.problems.append("PagerDuty is not configured, so on-call is unknown")
    else:
        try:
            before = _oncall_at(pager, rotation, handoff.shift.handoff_at - timedelta(seconds=1))
            after = _oncall_at(pager, rotation, handoff.shift.handoff_at)
        except ExternalError as exc:
            handoff.problems.append(f"PagerDuty did not answer ({exc.code})")
        else:
            with db.transaction(engine) as s:
                emails = [r.email for r in (*before, *after) if r.email]
                known = Directory.load(s, settings.people, emails)
            handoff.outgoing = [_person(chat, r, handoff.problems, known) for r in before]
            handoff.incoming = [_person(chat, r, handoff.problems, known) for r in after]
    with db.transaction(engine) as s:
        # Configured people: a CLI user (``bob``) is mentioned as their Slack self.
        _collect(s, settings, handoff, tz, Directory.load(s, settings.people, []))
    return handoff


# -- rendering ---------------------------------------------------------------------------------


def _mrkdwn_out(value: Any) -> Any:
    """Every ``{{ … }}`` is escaped for Slack mrkdwn unless it is markup the bot built (marked
    ``| safe`` in the template: mentions of stored user ids, channel links)."""
    return value if isinstance(value, Markup) else mrkdwn("" if value is None else value)


def _people(people: list[Person]) -> Markup:
    """Mentions (or escaped names, see ``Person.mention``): already mrkdwn."""
    return Markup(", ".join(p.mention for p in people) or "unknown")  # noqa: S704


def _environment(template_dir: Path | None = None) -> jinja2.Environment:
    return jinja2.Environment(
        loader=override_loader(template_dir, "handoff.template_dir"),
        # Slack mrkdwn, not HTML: each value is escaped by `finalize` (HTML escaping would
        # show quotes as entities), so a value the template forgets to escape cannot leak.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        finalize=_mrkdwn_out,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(handoff: Handoff, template_dir: Path | None = None) -> str:
    """The handoff message (Slack mrkdwn) from ``templates/handoff.md.j2``, or the one in
    ``template_dir`` (the ``handoff.template_dir`` setting) when it has one."""
    env = _environment(template_dir)
    env.filters["mrkdwn"] = lambda value: Markup(mrkdwn(value))  # noqa: S704 (escaped)
    env.filters["people"] = _people
    tz = ZoneInfo(handoff.rotation.timezone)
    shift = handoff.shift
    return env.get_template("handoff.md.j2").render(
        h=handoff,
        rotation=handoff.rotation,
        start=when(shift.start, tz),
        handoff_at=when(shift.handoff_at, tz),
        end=when(shift.end, tz),
        same_person=bool(handoff.outgoing)
        and {p.email or p.name for p in handoff.outgoing}
        == {p.email or p.name for p in handoff.incoming},
        limit=LIST_LIMIT,
    )
