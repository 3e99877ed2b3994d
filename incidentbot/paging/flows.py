"""Paging on-call, durably: request a page in the change's transaction, trigger it from a step.

A page is a row (so it can be shown and resolved later) and a ledger run. Its key is derived
from our incident and the service, and the adapter finds an open PagerDuty incident with that
key before creating one, so a retried page, a crashed worker or a double click never pages
twice. The steps themselves, and the page's state as PagerDuty reports it, are
:mod:`incidentbot.paging.pager_actions`.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from incidentbot import policy
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ledger import service as ledger
from incidentbot.paging.models import Page

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
