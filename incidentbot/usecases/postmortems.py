"""Postmortems: write a section, set the owner, move the status, publish; and what a door
shows of one (its summary, a section's current text).

Each change and its timeline event commit in one transaction; publishing writes the Markdown
and HTML files in that same transaction (a failed write changes nothing). Results are data:
the :class:`~incidentbot.postmortems.contents.Document` and the language check's findings are
for the door to render in its own medium.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session

from incidentbot import db
from incidentbot.clock import utcnow
from incidentbot.errors import DomainError
from incidentbot.incidents import records
from incidentbot.incidents import service as incidents
from incidentbot.incidents.models import Incident
from incidentbot.postmortems import impact_numbers, impact_start, lifecycle
from incidentbot.postmortems.blameless import Finding
from incidentbot.postmortems.contents import Document, ImpactNumber
from incidentbot.postmortems.document import build
from incidentbot.postmortems.models import PUBLISHED
from incidentbot.postmortems.publish import publish as publish_files
from incidentbot.postmortems.render import render_document
from incidentbot.usecases import incidents as incident_uc
from incidentbot.usecases.core import Actor, Core

SECTIONS = lifecycle.SECTIONS


@dataclass(frozen=True)
class Edited:
    ref: str
    status: str  # the postmortem's status (draft, in_review)
    section: str | None  # the section written, if one was
    cleared: bool  # the section was emptied
    chars: int  # the section's length now
    owner: str | None  # the owner, if it was set
    findings: tuple[Finding, ...]  # the language check's findings in that section
    impact: tuple[ImpactNumber, ...] = ()  # the impact numbers changed, as the document shows them


@dataclass(frozen=True)
class StatusChanged:
    ref: str
    old: str
    new: str
    published: Published | None = None  # moving to published publishes


@dataclass(frozen=True)
class Published:
    ref: str
    markdown: Path
    html: Path
    again: bool  # it was published before: the files were replaced
    document: Document


@dataclass(frozen=True)
class SectionText:
    ref: str
    section: str
    title: str
    prompt: str
    text: str  # empty when nothing is written yet
    impact: dict[str, int] = field(default_factory=dict)  # the numbers typed (impact only)


@dataclass(frozen=True)
class Summary:
    document: Document
    markdown_bytes: int  # the size of the whole rendered Markdown


def section_text(core: Core, ref: str, section: str) -> SectionText:
    """What a section says now (for a form to edit it); refused when the postmortem is
    published, as the edit would be."""
    key = lifecycle.section_key(section, core.settings)
    spec = next(s for s in lifecycle.sections_for(core.settings) if s.key == key)
    with db.transaction(core.engine) as s:
        inc = incidents.get(s, ref)
        row = lifecycle.current(s, core.settings, inc)
        lifecycle.require_editable(inc, row)
        text = str((row.sections or {}).get(key) or "")
        numbers = impact_numbers.typed(row.impact) if key == "impact" else {}
        return SectionText(inc.ref, key, spec.title, spec.prompt, text, numbers)


def edit(
    core: Core,
    actor: Actor,
    ref: str,
    *,
    section: str | None = None,
    text: str | None = None,
    owner: str | None = None,
    impact: Mapping[str, str | int | None] | None = None,
) -> Edited:
    """Write ``section`` (``text`` None empties it), set the ``owner`` and/or impact numbers
    (``impact``: key -> what was typed, None or "" clears it), together: one bad number and
    nothing is saved."""
    if section is None and owner is None and not impact:
        raise DomainError("nothing to change: name a section to write, an owner or a number")
    key = lifecycle.section_key(section, core.settings) if section is not None else None
    numbers = read_impact(impact or {})
    now = utcnow()
    with db.transaction(core.engine) as s:
        inc = incidents.get(s, ref)
        row = lifecycle.current(s, core.settings, inc)
        if owner is not None:
            row = lifecycle.set_owner(s, core.settings, inc, owner, actor=actor.id, now=now)
        if numbers:
            row = lifecycle.edit_impact(s, core.settings, inc, numbers, actor=actor.id, now=now)
        if key is not None:
            row = lifecycle.edit_section(s, core.settings, inc, key, text, actor=actor.id,
                                         now=now)  # fmt: skip
        doc = build(s, core.settings, inc, postmortem=row)
        return Edited(
            ref=inc.ref,
            status=row.status,
            section=key,
            cleared=key is not None and text is None,
            chars=len((row.sections or {}).get(key, "")) if key else 0,
            owner=row.owner if owner is not None else None,
            findings=tuple(f for f in doc.findings if key is not None and f.section == key),
            impact=tuple(n for n in doc.impact_numbers if n.key in numbers),
        )


class ImpactError(DomainError):
    """Impact numbers that cannot be read: ``errors`` says which, each with why."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def read_impact(typed: Mapping[str, str | int | None]) -> dict[str, int | None]:
    """Typed impact numbers (key or alias -> text; None or "" clears one) as stored values;
    every number that cannot be read is named in one :class:`ImpactError`."""
    out: dict[str, int | None] = {}
    errors: dict[str, str] = {}
    for name, value in typed.items():
        key = impact_numbers.number_key(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            out[key] = None
            continue
        try:
            out[key] = impact_numbers.parse_value(key, value)
        except DomainError as exc:
            errors[key] = str(exc)
    if errors:
        raise ImpactError(errors)
    return out


def change_status(core: Core, actor: Actor, ref: str, status: str) -> StatusChanged:
    """draft → in_review → published, or back one step; ``published`` publishes."""
    new = lifecycle.status_name(status)
    with db.transaction(core.engine) as s:
        inc = incidents.get(s, ref)
        old = lifecycle.current(s, core.settings, inc).status
        if new == PUBLISHED:
            done = _publish(core, actor, s, inc)
            return StatusChanged(inc.ref, old, PUBLISHED, done)
        row = lifecycle.change_status(s, core.settings, inc, new, actor=actor.id, now=utcnow())
        return StatusChanged(inc.ref, old, row.status)


def publish(core: Core, actor: Actor, ref: str) -> Published:
    """Write ``INC-n-postmortem.md`` and ``.html`` to the publish directory and mark the
    postmortem published (it must be in review, or published already to refresh the files)."""
    with db.transaction(core.engine) as s:
        return _publish(core, actor, s, incidents.get(s, ref))


def _publish(core: Core, actor: Actor, s: Session, inc: Incident) -> Published:
    done = publish_files(s, core.settings, inc, actor=actor.id, now=utcnow())
    return Published(inc.ref, done.markdown, done.html, done.again, done.document)


def summary(core: Core, ref: str) -> Summary:
    """The postmortem as it stands, rendered in full once (so a broken template shows here
    and not at publishing). Names are the people directory's; nothing is saved."""
    with db.transaction(core.engine) as s:
        doc = build(s, core.settings, incidents.get(s, ref))
    markdown = render_document(core.settings, doc, "md")
    return Summary(doc, len(markdown.encode()))


@dataclass(frozen=True)
class ImpactStartQuestion:
    """What the resolve asks when the impact's start is not recorded."""

    ref: str
    timezone: str
    detected: str | None  # the times "same as …" stands for, in the team's time zone
    declared: str | None


def impact_start_question(core: Core, ref: str) -> ImpactStartQuestion | None:
    """None when the incident's impact start is recorded; else what to ask."""
    with db.transaction(core.engine) as s:
        inc = incidents.get(s, ref)
        if inc.impact_started_at is not None:
            return None
        refs = impact_start.reference_times(
            inc, records.timeline(s, inc), core.settings.alerts.actor
        )
    tz = ZoneInfo(core.settings.timezone)

    def local(when: datetime | None) -> str | None:
        return when.astimezone(tz).strftime("%Y-%m-%d %H:%M") if when else None

    return ImpactStartQuestion(
        ref, core.settings.timezone, local(refs["detected"]), local(refs["declared"])
    )


def check_impact_start(
    core: Core, ref: str, text: str, *, recorded: str = "is already recorded"
) -> datetime:
    """The time ``text`` names for the impact's start of ``ref``, checked and not recorded: a
    DomainError (nothing changed) when it is not a time or the start is recorded already."""
    with db.read(core.engine) as s:
        inc = incidents.get(s, ref)
        if inc.impact_started_at is not None:
            raise DomainError(
                f"the impact start of {inc.ref} {recorded} "
                f"({inc.impact_started_at:%Y-%m-%d %H:%M} UTC): nothing changed"
            )
        refs = impact_start.reference_times(
            inc, records.timeline(s, inc), core.settings.alerts.actor
        )
    return impact_start.parse(text, references=refs, timezone=core.settings.timezone, now=utcnow())


@dataclass(frozen=True)
class ImpactStartGiven:
    ref: str
    at: datetime
    metrics: tuple[tuple[str, str], ...]  # (label, value) of the response metrics now


def give_impact_start(core: Core, actor: Actor, ref: str, text: str) -> ImpactStartGiven:
    """Record when the impact started, as answered at the resolve: the milestone says it was
    given at the resolve (the postmortem's metrics say so). Refused, nothing changed, when the
    text is not a time or the start was recorded meanwhile."""
    at = check_impact_start(core, ref, text, recorded="was recorded meanwhile")
    done = incident_uc.set_milestone(core, actor, ref, "impact_started", at, via="resolve")
    with db.transaction(core.engine) as s:
        doc = build(s, core.settings, incidents.get(s, ref))
    return ImpactStartGiven(done.ref, done.at, tuple((m.label, m.value) for m in doc.metrics))


@dataclass(frozen=True)
class SectionsWritten:
    ref: str
    sections: tuple[tuple[str, str, bool], ...]  # (key, title, written), in document order


def sections_written(core: Core, ref: str) -> SectionsWritten:
    """Every section (a team's too) and whether it is written; refused once published, as an
    edit would be."""
    with db.transaction(core.engine) as s:
        inc = incidents.get(s, ref)
        row = lifecycle.current(s, core.settings, inc)
        lifecycle.require_editable(inc, row)
        texts = row.sections or {}
        return SectionsWritten(
            inc.ref,
            tuple(
                (x.key, x.title, bool(str(texts.get(x.key) or "").strip()))
                for x in lifecycle.sections_for(core.settings)
            ),
        )
