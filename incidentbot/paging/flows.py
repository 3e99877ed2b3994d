"""Paging on-call, durably: request a page in the change's transaction, trigger it from a step.

A page is a row (so it can be shown and resolved later) and a ledger run. Its key is derived
from our incident and the service, and the adapter finds an open PagerDuty incident with that
key before creating one, so a retried page, a crashed worker or a double click never pages
twice. A page that finally fails is announced in the incident channel with a fallback: the
service's Slack on-call group is mentioned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from incidentbot import db, policy
from incidentbot.chat_text import mrkdwn
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ledger import service as ledger
from incidentbot.ledger.actions import ActionRegistry, PermanentError, StepContext
from incidentbot.ledger.events import LedgerEvent
from incidentbot.ledger.redact import redact_text
from incidentbot.paging import links
from incidentbot.paging.models import Page
from incidentbot.ports import Chat, Pager

log = logging.getLogger(__name__)

BOT_ACTOR = "incidentbot"
PAGE_RETRY = {"max_attempts": 8, "backoff": 1.0, "max_backoff": 60.0}
ACTIVE = ("requested", "triggered", "acknowledged")


def _service(settings: Settings, name: str | None) -> str:
    pd = settings.pagerduty
    if not pd.enabled:
        raise DomainError("paging is not configured: add services under `pagerduty:`")
    chosen = (name or pd.default_service or "").strip().lower()
    if not chosen:
        raise DomainError(f"name a service to page: {', '.join(sorted(pd.services))}")
    if chosen not in pd.services:
        raise DomainError(
            f"unknown service {chosen!r}: configured are {', '.join(sorted(pd.services))}"
        )
    return chosen


def pages_of(session: Session, incident: Incident) -> list[Page]:
    stmt = select(Page).where(Page.incident_id == incident.id).order_by(col(Page.id))
    return list(session.exec(stmt))


def _page_run(
    session: Session,
    incident: Incident,
    page: Page,
    *,
    kind: str,
    key: str,
    name: str,
    action: str,
    actor: str,
) -> None:
    """One durable step on one page (trigger, resolve, note), idempotent by ``key``."""
    ledger.start_run(
        session,
        kind=kind,
        key=key,
        steps=[
            {
                "name": name,
                "action": action,
                "input": {"page_id": page.id},
                "idempotent": True,
                "retry": PAGE_RETRY,
                "timeout": 30.0,
            }
        ],
        incident_id=incident.id,
        actor=actor,
    )


def request_page(
    session: Session,
    settings: Settings,
    incident: Incident,
    service: str | None,
    *,
    actor: str,
    message: str | None = None,
) -> tuple[Page, bool]:
    """Queue a page of ``service`` (default service when None); returns (page, is_new).

    A service already paged for this incident and not resolved is not paged again. An incident
    in a terminal status (closed) pages nobody: waking on-call for it is a mistake, and
    reopening it first says why they are woken."""
    name = _service(settings, service)
    if incident.status in policy.terminal_statuses(settings):
        raise DomainError(
            f"{incident.ref} is {incident.status}: cannot page on-call; reopen it first"
        )
    for page in pages_of(session, incident):
        if page.service == name and page.status in ACTIVE:
            return page, False
    n = sum(1 for p in pages_of(session, incident) if p.service == name) + 1
    now = utcnow()
    page = Page(
        incident_id=incident.id,  # type: ignore[arg-type]
        service=name,
        key=f"incidentbot-{incident.ref}-{name}" + (f"-{n}" if n > 1 else ""),
        requested_by=actor,
        message=(message or "").strip()[:1000] or None,
        requested_at=now,
    )
    session.add(page)
    session.flush()
    svc.record(
        session,
        incident,
        "page.requested",
        actor,
        f"Paging {name}" + (f": {page.message}" if page.message else ""),
        now=now,
        data={"service": name, "page_id": page.id},
    )
    _page_run(
        session,
        incident,
        page,
        kind="incident.page",
        key=f"{incident.ref}:page:{page.key}",
        name=f"Page {name} in PagerDuty",
        action="pager.trigger",
        actor=actor,
    )
    return page, True


def page_on_declare(
    session: Session, settings: Settings, incident: Incident, *, actor: str, service: str | None
) -> Page | None:
    """Severity policy: declaring a paging severity pages the named or the default service."""
    if declare_pages(settings, incident.severity, service) is None:
        return None
    page, _ = request_page(session, settings, incident, service, actor=actor)
    return page


def declare_pages(settings: Settings, severity: str, service: str | None) -> str | None:
    """The service a declare of ``severity`` pages (None: it pages nobody). An unknown service
    is refused here, so that a declare can check it before it records anything."""
    sev = next((s for s in settings.severities if s.name == severity), None)
    if sev is None or not sev.page or not settings.pagerduty.enabled:
        return None
    if not (service or settings.pagerduty.default_service):
        return None
    return _service(settings, service)


def resolve_pages(session: Session, settings: Settings, incident: Incident, *, actor: str) -> int:
    """Queue resolving the PagerDuty incidents this incident opened (when configured)."""
    if not settings.pagerduty.resolve_with_incident:
        return 0
    count = 0
    for page in pages_of(session, incident):
        if page.status in ("triggered", "acknowledged") and page.external_id:
            _page_run(
                session,
                incident,
                page,
                kind="incident.unpage",
                key=f"{incident.ref}:unpage:{page.key}:{page.external_id}",
                name=f"Resolve the {page.service} page",
                action="pager.resolve",
                actor=actor,
            )
            count += 1
    return count


def channel_line(incident: Incident) -> str:
    link = f"https://slack.com/app_redirect?channel={incident.channel_id}"
    return f"Incident channel: #{incident.channel_name} {link}"


def link_channel(session: Session, incident: Incident) -> None:
    """Tell PagerDuty where the incident is worked, for pages opened before the channel was.

    Called when the channel is created and when a page is triggered; the run key makes the
    note go out once whichever comes last."""
    if not incident.channel_id:
        return
    for page in pages_of(session, incident):
        if page.external_id and page.status in ("triggered", "acknowledged"):
            _page_run(
                session,
                incident,
                page,
                kind="incident.page_note",
                key=f"{incident.ref}:page-note:{page.key}",
                name=f"Link the channel in the {page.service} page",
                action="pager.note",
                actor=BOT_ACTOR,
            )


class PagerActions:
    """The ``pager.*`` ledger actions, bound to a Pager adapter and the database."""

    def __init__(
        self,
        pager: Pager,
        engine: Engine,
        settings: Settings,
        *,
        chat: Chat | None = None,
        on_change: Callable[[Session, Incident], None] | None = None,
        routing_keys: dict[str, str] | None = None,
    ):
        self.routing_keys = routing_keys or {}
        self.pager = pager
        self.engine = engine
        self.settings = settings
        self.chat = chat
        self.on_change = on_change  # e.g. queue a header refresh

    def install(self, registry: ActionRegistry) -> None:
        for name, fn in (
            ("pager.trigger", self.trigger),
            ("pager.resolve", self.resolve),
            ("pager.note", self.note),
        ):
            registry.register(name, fn, idempotent=True, replace=True)

    def _load(self, page_id: int) -> tuple[Page, Incident]:
        with db.transaction(self.engine) as s:
            page = s.get(Page, page_id)
            inc = s.get(Incident, page.incident_id) if page else None
        if page is None or inc is None:
            raise PermanentError(f"page {page_id} does not exist")
        return page, inc

    def trigger(self, ctx: StepContext, input: dict[str, Any]) -> dict[str, Any]:
        page, inc = self._load(int(input["page_id"]))
        cfg = self.settings.pagerduty.services[page.service]
        details = "\n".join(
            x
            for x in (
                f"{inc.ref} ({inc.severity}, {inc.status}): {inc.title}",
                page.message or "",
                channel_line(inc) if inc.channel_id else "",
            )
            if x
        )
        info = self.pager.trigger(
            service_id=cfg.service_id,
            escalation_policy_id=cfg.escalation_policy_id,
            key=page.key,
            title=f"{inc.ref} ({inc.severity}): {inc.title}",
            details=details,
            routing_key=self.routing_keys.get(page.service),
        )
        now = utcnow()
        with db.transaction(self.engine) as s:
            # Lock the incident first, as the channel creation does: whichever commits second
            # sees the other's work, so the channel link reaches the page either way.
            incident = s.get(Incident, inc.id, with_for_update=True)
            assert incident is not None
            row = s.get(Page, page.id)
            assert row is not None
            row.external_id, row.number, row.url = info.id, info.number, info.url
            if row.status == "requested":
                row.status = "acknowledged" if info.status == "acknowledged" else "triggered"
                row.triggered_at = now
            s.add(row)
            svc.record(
                s,
                incident,
                "page.triggered",
                BOT_ACTOR,
                f"Paged {page.service}: PagerDuty #{info.number}",
                now=now,
                data={
                    "service": page.service,
                    "number": info.number,
                    "url": info.url,
                    "external_id": info.id,
                },
                source_key=f"page-triggered:{page.id}",
            )
            if self.on_change:
                self.on_change(s, incident)
            if incident.channel_id and not inc.channel_id:
                link_channel(s, incident)  # the channel appeared while we were paging
        return {"external_id": info.id, "number": info.number, "status": info.status}

    def note(self, ctx: StepContext, input: dict[str, Any]) -> dict[str, Any]:
        page, inc = self._load(int(input["page_id"]))
        if not page.external_id or not inc.channel_id:
            return {"skipped": "nothing to link yet"}
        self.pager.add_note(page.external_id, channel_line(inc))
        return {"noted": page.external_id}

    def resolve(self, ctx: StepContext, input: dict[str, Any]) -> dict[str, Any]:
        page, _incident = self._load(int(input["page_id"]))
        if page.status == "resolved" or not page.external_id:
            return {"status": page.status}
        info = self.pager.resolve(page.external_id)
        mark_page(
            self.engine, page.external_id, "resolved", BOT_ACTOR, None, on_change=self.on_change
        )
        return {"status": info.status}

    def on_ledger_event(self, ev: LedgerEvent) -> None:
        """A page that finally failed: on the timeline, and the fallback in the channel."""
        if ev.kind not in ("run.failed", "run.needs_attention") or ev.run_kind != "incident.page":
            return
        with db.transaction(self.engine) as s:
            steps = ledger.get_steps(s, ev.run_id)
            page = s.get(Page, int(steps[0].input["page_id"])) if steps else None
            if page is None:
                return
            inc = s.get(Incident, page.incident_id)
            assert inc is not None
            page.status = "failed"
            s.add(page)
            error = redact_text(ev.error or "unknown error")
            svc.record(
                s,
                inc,
                "page.failed",
                BOT_ACTOR,
                f"Paging {page.service} failed: {error}",
                now=utcnow(),
                data={"service": page.service},
            )
        group = self.settings.pagerduty.services[page.service].slack_oncall_group
        fallback = f"<!subteam^{group}> please respond" if group else "please page by hand"
        text = (
            f":rotating_light: Paging *{page.service}* in PagerDuty failed ({mrkdwn(error)}): "
            f"{fallback}."
        )
        if self.chat is None:
            return
        try:
            # The incident channel if it exists yet, else the digest channel, where everyone
            # watching incidents will see it.
            where = inc.channel_id
            if where is None:
                digest = self.chat.find_channel(self.settings.channels.digest)
                where = digest.id if digest else None
            if where:
                self.chat.post(where, text, [])
        except Exception as exc:  # reporting a failure must not fail in turn
            log.warning("could not announce the failed page: %s", exc)


def mark_page(
    engine: Engine,
    external_id: str,
    status: str,
    actor: str,
    agent: str | None,
    *,
    source_key: str | None = None,
    on_change: Callable[[Session, Incident], None] | None = None,
) -> Page | None:
    """Record a page's new state (from a webhook or our own resolve), once per source_key."""
    now = utcnow()
    with db.transaction(engine) as s:
        # Locked: our own resolve and PagerDuty's webhook echoing it arrive together, and
        # only the first may record the change.
        stmt = select(Page).where(Page.external_id == external_id).with_for_update()
        page = s.exec(stmt).first()
        if page is None:
            return None
        if source_key and svc.has_event(s, source_key):
            return page
        if status in ("acknowledged", "resolved") and page.status == status:
            return page  # already known (our own resolve, echoed back by the webhook)
        inc = s.get(Incident, page.incident_id)
        assert inc is not None
        who = agent or actor
        if status == "acknowledged":
            page.acknowledged_at = page.acknowledged_at or now
            page.acknowledged_by = who
            if inc.acknowledged_at is None:
                inc.acknowledged_at = now
                s.add(inc)
        if status == "resolved":
            page.resolved_at = now
        if status in ("acknowledged", "resolved", "triggered"):
            page.status = status
        s.add(page)
        summary = {
            "acknowledged": f"{who} acknowledged PagerDuty #{page.number} ({page.service})",
            "resolved": f"PagerDuty #{page.number} ({page.service}) resolved"
            + (f" by {agent}" if agent else ""),
            "escalated": f"PagerDuty #{page.number} ({page.service}) escalated",
            "reassigned": f"PagerDuty #{page.number} ({page.service}) reassigned"
            + (f" by {agent}" if agent else ""),
        }.get(status, f"PagerDuty #{page.number} ({page.service}): {status}")
        svc.record(
            s,
            inc,
            f"page.{status}",
            who,
            summary,
            now=now,
            data={"service": page.service, "number": page.number, "agent": agent},
            source_key=source_key,
        )
        if status == "resolved" and actor != BOT_ACTOR:
            links.ask_to_resolve(s, inc, page, agent)  # resolved in PagerDuty, ours still open
        if on_change:
            on_change(s, inc)
        return page
