"""A postmortem's lifecycle: whether it is required, when it is due, what people wrote, and
draft → in review → published.

The row is created when the incident is resolved and its severity policy requires one
(:func:`on_resolved`, called from the resolve in :mod:`incidentbot.incidents.service`), or the
first time someone writes a section or changes its status. Rendering never writes: without a
row it renders what the row would say (:func:`current`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from incidentbot import policy
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import records
from incidentbot.incidents.models import Incident
from incidentbot.ledger.redact import redact_text
from incidentbot.postmortems import impact_numbers, sections
from incidentbot.postmortems.metrics import EventLike, worst_severity
from incidentbot.postmortems.models import DRAFT, IN_REVIEW, PUBLISHED, STATUSES, Postmortem

MAX_SECTION = 20_000


SECTIONS = sections.BUILT_IN  # the built-in sections; sections_for(settings) adds a team's
SECTION_KEYS = sections.BUILT_IN_KEYS
Section = sections.Section


def sections_for(settings: Settings) -> tuple[Section, ...]:
    """Every section a postmortem has: the built-in ones, then the team's
    (``postmortems.extra_sections``)."""
    return sections.all_sections(settings.postmortems.extra_sections)


STATUS_LABELS = {DRAFT: "Draft", IN_REVIEW: "In review", PUBLISHED: "Published"}
# Which status may follow which. Published goes back to review to be corrected.
TRANSITIONS = {DRAFT: (IN_REVIEW,), IN_REVIEW: (DRAFT, PUBLISHED), PUBLISHED: (IN_REVIEW,)}


def section_key(text: str, settings: Settings | None = None) -> str:
    """``what_went_well``, ``what-went-well``, ``well`` … name a section; a team's sections
    (``postmortems.extra_sections``) count when ``settings`` is given."""
    extra = settings.postmortems.extra_sections if settings is not None else ()
    return sections.section_key(text, extra)


def status_name(text: str) -> str:
    raw = "_".join(str(text).strip().lower().replace("-", " ").split())
    raw = {"review": IN_REVIEW, "publish": PUBLISHED}.get(raw, raw)
    if raw not in STATUSES:
        raise DomainError(f"unknown postmortem status {text!r}: allowed are {', '.join(STATUSES)}")
    return raw


# -- policy ------------------------------------------------------------------------------------


def requirement(
    session: Session,
    settings: Settings,
    incident: Incident,
    events: Sequence[EventLike] | None = None,
) -> tuple[bool, str]:
    """Whether the severity policy requires a postmortem, and why: the worst severity the
    incident had counts (a SEV1 lowered to SEV3 before resolving still needs one)."""
    worst = worst_severity(
        events if events is not None else records.timeline(session, incident),
        incident.severity,
        settings.severity_names(),
    )
    try:
        sev = policy.severity(settings, worst)
    except DomainError:
        return False, f"{worst} is no longer a configured severity"
    if sev.postmortem_required:
        return True, f"required by the {sev.name} policy"
    return False, f"not required for {sev.name}"


def due_date(settings: Settings, resolved_at: datetime) -> date:
    """``due_business_days`` weekdays (Monday to Friday) after the day of the resolve in the
    team's time zone. Public holidays are not known here."""
    day = resolved_at.astimezone(ZoneInfo(settings.timezone)).date()
    left = settings.postmortems.due_business_days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day


# -- reading -----------------------------------------------------------------------------------


def find(session: Session, incident: Incident) -> Postmortem | None:
    return session.exec(select(Postmortem).where(Postmortem.incident_id == incident.id)).first()


def _new(
    session: Session,
    settings: Settings,
    incident: Incident,
    now: datetime,
    events: Sequence[EventLike] | None = None,
) -> Postmortem:
    required, _why = requirement(session, settings, incident, events)
    due = due_date(settings, incident.resolved_at) if required and incident.resolved_at else None
    assert incident.id is not None
    return Postmortem(
        incident_id=incident.id,
        status=DRAFT,
        required=required,
        due_date=due,
        sections={},
        owner=incident.commander,
        created_at=now,
        updated_at=now,
    )


def current(
    session: Session,
    settings: Settings,
    incident: Incident,
    events: Sequence[EventLike] | None = None,
) -> Postmortem:
    """The incident's postmortem, or (not saved) the draft it would start as. The unsaved
    draft's times are the incident's resolve or declare, so rendering needs no clock."""
    found = find(session, incident)
    if found is not None:
        return found
    when = incident.resolved_at or incident.declared_at
    return _new(session, settings, incident, when, events)


def ensure(
    session: Session, settings: Settings, incident: Incident, *, now: datetime
) -> Postmortem:
    """The incident's postmortem row, created (as a draft) if there is none."""
    found = find(session, incident)
    if found is not None:
        return found
    row = _new(session, settings, incident, now)
    session.add(row)
    session.flush()
    return row


# -- changes -----------------------------------------------------------------------------------


def on_resolved(
    session: Session, settings: Settings, incident: Incident, *, now: datetime
) -> Postmortem | None:
    """Called in the resolve's transaction: a required postmortem is created with its due date.
    A resolve after a reopen keeps the postmortem people already wrote."""
    required, _why = requirement(session, settings, incident)
    found = find(session, incident)
    if found is None:
        if not required:
            return None
        return ensure(session, settings, incident, now=now)
    if required and not found.required:
        found.required = True
        found.updated_at = now
    if found.required and found.due_date is None and incident.resolved_at is not None:
        found.due_date = due_date(settings, incident.resolved_at)
        found.updated_at = now
    session.add(found)
    return found


def require_editable(incident: Incident, row: Postmortem) -> None:
    """Refuse a change to a published postmortem (it goes back to in_review first)."""
    if row.status == PUBLISHED:
        raise DomainError(
            f"the {incident.ref} postmortem is published: move it back to in_review to change it"
        )


def edit_section(
    session: Session,
    settings: Settings,
    incident: Incident,
    section: str,
    text: str | None,
    *,
    actor: str,
    now: datetime,
) -> Postmortem:
    """Write (or with ``text=None`` clear) one section."""
    key = section_key(section, settings)
    row = ensure(session, settings, incident, now=now)
    require_editable(incident, row)
    sections = dict(row.sections or {})
    if text is None:
        sections.pop(key, None)
        what = "cleared"
    else:
        clean = redact_text(text.replace("\r\n", "\n").strip())  # secrets never stored
        if not clean:
            raise DomainError(f"the text for {key} is empty: write something, or use --clear")
        if len(clean) > MAX_SECTION:
            raise DomainError(
                f"the text for {key} is {len(clean)} characters: at most {MAX_SECTION}"
            )
        sections[key] = clean
        what = f"wrote {len(clean)} characters in"
    row.sections = sections  # a new dict: the JSON column sees the change
    row.updated_at = now
    session.add(row)
    records.record(
        session,
        incident,
        "postmortem.edited",
        actor,
        f"Postmortem: {what} {key.replace('_', ' ')}",
        now=now,
        data={"section": key, "chars": len(sections.get(key, ""))},
    )
    return row


def edit_impact(
    session: Session,
    settings: Settings,
    incident: Incident,
    changes: dict[str, int | None],
    *,
    actor: str,
    now: datetime,
) -> Postmortem:
    """Set (or with None clear) impact numbers, already read by
    :func:`incidentbot.postmortems.impact_numbers.parse_value`."""
    if not changes:
        raise DomainError("no impact number given: " + ", ".join(impact_numbers.KEYS))
    row = ensure(session, settings, incident, now=now)
    require_editable(incident, row)
    row.impact = impact_numbers.apply(row.impact, changes, actor=actor, now=now) or None
    row.updated_at = now
    session.add(row)
    said = [
        f"{impact_numbers.BY_KEY[k].label.lower()} "
        + ("cleared" if v is None else impact_numbers.show(k, v))
        for k, v in changes.items()
    ]
    records.record(
        session,
        incident,
        "postmortem.edited",
        actor,
        f"Postmortem impact: {'; '.join(said)}",
        now=now,
        data={"impact": dict(changes)},
    )
    return row


def set_owner(
    session: Session,
    settings: Settings,
    incident: Incident,
    owner: str,
    *,
    actor: str,
    now: datetime,
) -> Postmortem:
    clean = str(owner).strip()
    if not clean:
        raise DomainError("the owner is empty: name a person")
    row = ensure(session, settings, incident, now=now)
    require_editable(incident, row)
    row.owner = clean[:128]
    row.updated_at = now
    session.add(row)
    records.record(
        session,
        incident,
        "postmortem.owner",
        actor,
        f"Postmortem owner: {row.owner}",
        now=now,
        data={"owner": row.owner},
    )
    return row


def change_status(
    session: Session,
    settings: Settings,
    incident: Incident,
    status: str,
    *,
    actor: str,
    now: datetime,
    published_path: str | None = None,
) -> Postmortem:
    """Move the postmortem along draft → in_review → published (or back one step). Publishing
    goes through :func:`incidentbot.postmortems.publish.publish`, which writes the files and
    passes their path here."""
    new = status_name(status)
    row = ensure(session, settings, incident, now=now)
    old = row.status
    if new == PUBLISHED and published_path is None:
        raise DomainError("publishing writes the documents: use `incidentbot postmortem publish`")
    if new in (IN_REVIEW, PUBLISHED) and incident.status not in policy.terminal_statuses(settings):
        raise DomainError(
            f"{incident.ref} is {incident.status}: resolve it before its postmortem goes to "
            f"{new.replace('_', ' ')}"
        )
    if new == old and new != PUBLISHED:
        raise DomainError(f"the {incident.ref} postmortem is already {new}")
    if new != old and new not in TRANSITIONS[old]:
        allowed = " or ".join(TRANSITIONS[old])
        hint = " (review comes before publishing)" if old == DRAFT and new == PUBLISHED else ""
        raise DomainError(
            f"the {incident.ref} postmortem is {old}: it can move to {allowed}, not {new}{hint}"
        )
    row.status = new
    row.updated_at = now
    if new == IN_REVIEW:
        row.review_started_at = now
    if new == PUBLISHED:
        row.published_at = now
        row.published_path = published_path
    session.add(row)
    again = " again" if new == old else ""
    records.record(
        session,
        incident,
        "postmortem.status",
        actor,
        f"Postmortem {STATUS_LABELS[new].lower()}{again}"
        + (f": {published_path}" if new == PUBLISHED else ""),
        now=now,
        data={"from": old, "to": new, "path": published_path},
    )
    return row
