"""The incident lifecycle as use cases: declare, change, note, update, milestone, resolve, close,
reopen, page.

Each function is one transaction: the change, its timeline entry and every durable effect it
needs (the channel, the header and digest refresh, the status update's posts, pages and their
resolution) commit together or not at all. The effects are ledger runs executed by whichever
``serve`` or ``worker`` is running, so a change made from the CLI reaches Slack and PagerDuty
exactly as one made from Slack does. Results are data; each door renders them.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from incidentbot import inbound, policy
from incidentbot.config import Settings
from incidentbot.incidents import effects
from incidentbot.incidents import fields as incident_fields
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.paging import flows as paging
from incidentbot.paging import links
from incidentbot.ports import PageInfo
from incidentbot.usecases.core import Actor, Core


@dataclass(frozen=True)
class Declared:
    ref: str
    incident_id: int
    title: str
    severity: str
    status: str
    commander: str | None
    # The service paged by the severity policy (None: no page).
    paged: str | None
    # Whether the channel and the announcement were queued (a chat is configured).
    channel_queued: bool
    private: bool = False


@dataclass(frozen=True)
class Changed:
    """A severity or status change: ``what`` is ``severity`` or ``status``."""

    ref: str
    what: str
    old: str
    new: str


@dataclass(frozen=True)
class FieldSet:
    """A field set or cleared after the declare (``new`` None: cleared)."""

    ref: str
    field: str
    label: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class Assigned:
    ref: str
    role: str
    role_label: str
    role_description: str
    user: str


@dataclass(frozen=True)
class Unassigned:
    ref: str
    role: str


@dataclass(frozen=True)
class Noted:
    ref: str
    event_id: int


@dataclass(frozen=True)
class UpdatePosted:
    ref: str
    event_id: int
    # Where it is posted (a chat is configured): the incident channel and this digest channel.
    digest_channel: str | None


@dataclass(frozen=True)
class MilestoneSet:
    ref: str
    milestone: str
    at: datetime
    previous: datetime | None


@dataclass(frozen=True)
class Resolved:
    ref: str
    summary: str
    duration: timedelta | None
    # PagerDuty incidents queued to be resolved with this one.
    pages_resolving: int


@dataclass(frozen=True)
class Closed:
    ref: str


@dataclass(frozen=True)
class Reopened:
    ref: str
    old: str
    status: str


@dataclass(frozen=True)
class PageRequested:
    ref: str
    service: str
    # False: the service was already paged for this incident and not resolved; nothing queued.
    new: bool
    status: str


def declare_effects(
    session: Session,
    settings: Settings,
    incident: Incident,
    actor: str,
    service: str | None = None,
    *,
    chat: bool = True,
) -> str | None:
    """What every declare queues, whichever door it came from, in the declare's transaction:
    the channel and the announcement (with a chat), and the page the severity policy asks for
    (the named or the default service). Idempotent (by run key and open page); returns the
    service paged. The alert path calls it as its ``OnDeclare`` hook."""
    if chat:
        effects.start_declare_effects(session, incident, declarer=actor)
    page = paging.page_on_declare(session, settings, incident, actor=actor, service=service)
    return page.service if page is not None else None


def declare(
    core: Core,
    actor: Actor,
    *,
    title: str,
    severity: str | None = None,
    description: str | None = None,
    fields: dict[str, str] | None = None,
    commander: str | None = None,
    impact_started_at: datetime | None = None,
    detected_at: datetime | None = None,
    service: str | None = None,
    key: str | None = None,
    linked: PageInfo | None = None,
    linked_source: str | None = None,
    private: bool = False,
) -> Declared:
    """Record the incident, queue its channel and announcement, page on-call by policy.

    With ``key``, a repeated declare (a retried Slack request) returns the same incident and
    queues nothing twice. ``linked`` is a PagerDuty incident that declared it: linked as one of
    its pages (before the severity policy looks, so its service is not paged a second time),
    its timeline entry keyed ``linked_source``."""
    settings = core.settings
    # Refused before the transaction: a declare refused after its number was taken would
    # leave a gap on PostgreSQL (see svc.declare).
    paging.declare_pages(
        settings, policy.severity(settings, severity or settings.default_severity).name, service
    )
    # A Slack request claimed in the declare's own transaction (see incidentbot.inbound).
    # The channel and the announcement, checked here once, are written with the incident
    # (on PostgreSQL by the declare's one statement), unless the declare repeats one.
    runs = effects.declare_runs(actor.id) if core.chat else None
    with inbound.claimed_transaction(core.engine, by_caller=True) as s:
        claim = inbound.claim_key(s)  # PostgreSQL: claimed in the declare's one statement
        declared = svc.declare_claimed(
            s,
            settings,
            claim,
            title=title,
            severity=severity or settings.default_severity,
            actor=actor.id,
            description=description,
            fields=fields,
            commander=commander,
            impact_started_at=impact_started_at,
            detected_at=detected_at,
            idempotency_key=key,
            private=private,
            runs=runs,
        )
        if claim is not None:
            inbound.claimed_by_caller(s, declared is not None)
        assert declared is not None
        inc = declared
        if linked is not None:
            links.link_page(
                s,
                settings,
                inc,
                linked,
                actor=actor.id,
                how="(it declared this incident)",
                source_key=linked_source,
            )
        queued = runs is not None and runs.started is not None  # with the incident
        chat = core.chat and not queued
        paged = declare_effects(s, settings, inc, actor.id, chat=chat, service=service)
        assert inc.id is not None
        return Declared(
            ref=inc.ref,
            incident_id=inc.id,
            title=inc.title,
            severity=inc.severity,
            status=inc.status,
            commander=inc.commander,
            paged=paged,
            channel_queued=core.chat,
            private=bool(inc.private),
        )


def _change(core: Core) -> AbstractContextManager[Session]:
    """The transaction of a change to an incident. Typed in Slack, the request is claimed in
    it (see :mod:`incidentbot.inbound`): the claim and the change commit together, and a
    change refused in it leaves nothing claimed. From anywhere else it is a plain
    transaction."""
    return inbound.claimed_transaction(core.engine)


def _refresh(core: Core, s: Session, inc: Incident, actor: Actor, reason: str) -> None:
    """Queue the header and digest refresh a change needs (with a chat), for the incident the
    change read and changed in ``s`` (not read again: one round trip fewer)."""
    if core.chat:
        effects.refresh(s, inc, actor=actor.id, reason=reason)


def set_severity(core: Core, actor: Actor, ref: str, severity: str) -> Changed:
    with _change(core) as s:
        old = svc.get(s, ref).severity
        inc = svc.set_severity(s, core.settings, ref, severity, actor=actor.id)
        _refresh(core, s, inc, actor, "sev")
        return Changed(inc.ref, "severity", old, inc.severity)


def set_status(core: Core, actor: Actor, ref: str, status: str) -> Changed:
    with _change(core) as s:
        old = svc.get(s, ref).status
        inc = svc.set_status(s, core.settings, ref, status, actor=actor.id)
        _refresh(core, s, inc, actor, "status")
        return Changed(inc.ref, "status", old, inc.status)


def set_field(core: Core, actor: Actor, ref: str, name: str, value: str | None) -> FieldSet:
    """Set (``value``) or clear (None) an incident field after the declare, checked by the
    configured policy as at declare; the timeline says the old and the new value and the
    pinned header is refreshed."""
    with _change(core) as s:
        out = incident_fields.set_field(s, core.settings, ref, name, value, actor=actor.id)
        _refresh(core, s, out.incident, actor, "field")
        return FieldSet(out.incident.ref, out.name, out.label, out.old, out.new)


def assign(core: Core, actor: Actor, ref: str, role: str, user: str) -> Assigned:
    with _change(core) as s:
        inc = svc.assign_role(s, core.settings, ref, role, user, actor=actor.id)
        _refresh(core, s, inc, actor, "assign")
    spec = policy.role(core.settings, role)
    return Assigned(inc.ref, spec.name, spec.label, spec.description, user)


def unassign(core: Core, actor: Actor, ref: str, role: str) -> Unassigned:
    with _change(core) as s:
        inc = svc.unassign_role(s, core.settings, ref, role, actor=actor.id)
        _refresh(core, s, inc, actor, "unassign")
    return Unassigned(inc.ref, policy.role(core.settings, role).name)


def note(core: Core, actor: Actor, ref: str, text: str) -> Noted:
    with _change(core) as s:
        event = svc.add_note(s, core.settings, ref, text, actor=actor.id)
        s.flush()
        assert event.id is not None
        return Noted(f"INC-{svc.parse_ref(ref)}", event.id)  # add_note found it by that number


def update(core: Core, actor: Actor, ref: str, text: str) -> UpdatePosted:
    """A status update: on the timeline now; posted in the channel and the digest channel by
    a durable run (with a chat)."""
    with _change(core) as s:
        inc = svc.get(s, ref)
        if core.chat:
            event = effects.post_update(s, core.settings, inc, actor=actor.id, text=text)
        else:
            event = svc.add_note(
                s, core.settings, inc.ref, text, actor=actor.id, kind="status.update"
            )
            s.flush()
        assert event.id is not None
        digest = core.settings.channels.digest if core.chat else None
        return UpdatePosted(inc.ref, event.id, digest)


def set_milestone(
    core: Core, actor: Actor, ref: str, milestone: str, at: datetime, *, via: str | None = None
) -> MilestoneSet:
    """Set impact start, detection, acknowledgement or mitigation, possibly in the past
    (``via``: where it was given, e.g. ``resolve``)."""
    with _change(core) as s:
        inc = svc.get(s, ref)
        name = milestone.strip().lower().replace("-", "_").replace(" ", "_")
        previous = inc.milestone(name) if hasattr(inc, f"{name}_at") else None
        inc = svc.set_milestone(s, core.settings, ref, milestone, at, actor=actor.id, via=via)
        _refresh(core, s, inc, actor, "milestone")
        when = inc.milestone(name)
        assert when is not None
        return MilestoneSet(inc.ref, name, when, previous)


def resolve(core: Core, actor: Actor, ref: str, summary: str) -> Resolved:
    """Resolve, queue resolving the pages it opened, refresh the header and digest."""
    with _change(core) as s:
        inc = svc.resolve(s, core.settings, ref, summary, actor=actor.id)
        pages = paging.resolve_pages(s, core.settings, inc, actor=actor.id)
        _refresh(core, s, inc, actor, "resolve")
        duration = inc.resolved_at - inc.declared_at if inc.resolved_at else None
        return Resolved(inc.ref, inc.resolution_summary or summary, duration, pages)


def close(core: Core, actor: Actor, ref: str) -> Closed:
    with _change(core) as s:
        inc = svc.close(s, core.settings, ref, actor=actor.id)
        _refresh(core, s, inc, actor, "close")
        return Closed(inc.ref)


def reopen(core: Core, actor: Actor, ref: str, reason: str | None = None) -> Reopened:
    with _change(core) as s:
        old = svc.get(s, ref).status
        inc = svc.reopen(s, core.settings, ref, actor=actor.id, reason=reason)
        _refresh(core, s, inc, actor, "reopen")
        return Reopened(inc.ref, old, inc.status)


def page(
    core: Core, actor: Actor, ref: str, service: str | None, message: str | None = None
) -> PageRequested:
    """Queue a page of ``service`` (the default service when None) for the incident."""
    with _change(core) as s:
        inc = svc.get(s, ref)
        row, new = paging.request_page(
            s, core.settings, inc, service, actor=actor.id, message=message
        )
        return PageRequested(inc.ref, row.service, new, row.status)
