"""PagerDuty incidents we did not open, linked to ours: one that declared an incident (a service
set to ``declare``), one linked by hand (``/incident page link``), and the question asked in the
channel when PagerDuty resolves a linked page before we resolve ours.

A linked PagerDuty incident is a page like those we open (same row, same header line, resolved
with our incident), keyed ``pagerduty-<PagerDuty id>`` so it is linked once, to one incident.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from incidentbot import db
from incidentbot.chat_text import mrkdwn
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ledger import service as ledger
from incidentbot.ledger.actions import ActionRegistry, StepContext
from incidentbot.paging.models import Page
from incidentbot.ports import Chat, PageInfo

log = logging.getLogger(__name__)

BOT_ACTOR = "incidentbot"
# The button on the question "PagerDuty resolved #N: resolve INC-n too?".
RESOLVE_BUTTON = "pagerduty_resolve_incident"
# Our own pages carry a key of this shape (``incidentbot-INC-12-rpc``).
OWN_KEY_PREFIX = "incidentbot-"
_URL = re.compile(r"^https?://[^\s/]+(?:/[^\s/]+)*/incidents/([A-Za-z0-9]+)/?(?:[?#]\S*)?$")
_ID = re.compile(r"^[A-Z0-9]{6,20}$")
_NUMBER = re.compile(r"^#?([0-9]{1,10})$")


def parse_target(text: str) -> str:
    """A PagerDuty incident as people give it: its URL, its number (``1234``, ``#1234``) or its
    id; returns what ``GET /incidents/{id}`` takes. Anything else is refused clearly."""
    value = text.strip().strip("<>").split("|")[0]  # Slack wraps links as <url|label>
    if m := _NUMBER.match(value):
        return m.group(1)
    if m := _URL.match(value):
        return m.group(1)
    if _ID.match(value):
        return value
    raise DomainError(
        f"{text.strip()[:80]!r} is not a PagerDuty incident: give its URL "
        "(https://…/incidents/Q1ABC2DEF3) or its number (#1234)"
    )


def service_name(settings: Settings, service_id: str | None) -> str | None:
    """The name people type for a PagerDuty service id, if it is configured."""
    for name, cfg in settings.pagerduty.services.items():
        if cfg.service_id == service_id:
            return name
    return None


def linked_page(session: Session, external_id: str) -> Page | None:
    return session.exec(select(Page).where(Page.external_id == external_id)).first()


def own_page(session: Session, incident_key: str | None) -> Page | None:
    """One of the pages we opened, found by the key we gave it."""
    if not incident_key:
        return None
    return session.exec(select(Page).where(Page.key == incident_key)).first()


def open_incident_paging(session: Session, service: str) -> Incident | None:
    """The newest open incident of ours with an active page of ``service``."""
    stmt = (
        select(Incident)
        .join(Page, col(Page.incident_id) == col(Incident.id))
        .where(Page.service == service)
        .where(col(Page.status).in_(("requested", "triggered", "acknowledged")))
        .where(col(Incident.resolved_at).is_(None))
        .order_by(col(Incident.number).desc())
    )
    return session.exec(stmt).first()


def link_page(
    session: Session,
    settings: Settings,
    incident: Incident,
    info: PageInfo,
    *,
    actor: str,
    how: str,
    source_key: str | None = None,
) -> tuple[Page, bool]:
    """Link a PagerDuty incident to ``incident``; returns (page, is_new). A PagerDuty incident
    already linked to another incident of ours is refused."""
    existing = linked_page(session, info.id)
    if existing is not None:
        if existing.incident_id != incident.id:
            other = session.get(Incident, existing.incident_id)
            raise DomainError(
                f"PagerDuty #{existing.number} is already linked to {other.ref if other else '?'}"
            )
        return existing, False
    now = utcnow()
    known = ("triggered", "acknowledged", "resolved")
    status = info.status if info.status in known else "triggered"
    service = service_name(settings, info.service_id) or (info.service_id or "pagerduty")[:64]
    page = Page(
        incident_id=incident.id,  # type: ignore[arg-type]
        service=service,
        key=f"pagerduty-{info.id}",
        requested_by=actor,
        status=status,
        external_id=info.id,
        number=info.number,
        url=info.url,
        requested_at=now,
        triggered_at=now,
        resolved_at=now if status == "resolved" else None,
    )
    session.add(page)
    session.flush()
    svc.record(
        session,
        incident,
        "page.linked",
        actor,
        f"Linked PagerDuty #{info.number} ({service}, {status}) {how}",
        now=now,
        data={"service": service, "number": info.number, "url": info.url, "external_id": info.id},
        source_key=source_key,
    )
    return page, True


def ask_to_resolve(session: Session, incident: Incident, page: Page, agent: str | None) -> None:
    """PagerDuty resolved a linked page while ours is open: ask in the channel, durably."""
    if incident.resolved_at is not None or page.id is None:
        return
    resolved = page.resolved_at.isoformat() if page.resolved_at else "-"
    ledger.start_run(
        session,
        kind="incident.page_resolved",
        key=f"{incident.ref}:page-resolved:{page.id}:{resolved}",
        steps=[
            {
                "name": f"Ask whether to resolve {incident.ref}",
                "action": "pager.ask_resolve",
                "input": {"page_id": page.id, "agent": agent},
                "idempotent": True,
                "retry": {"max_attempts": 8, "backoff": 0.5, "max_backoff": 30.0},
                "timeout": 30.0,
            }
        ],
        incident_id=incident.id,
        actor=BOT_ACTOR,
    )


def question(incident: Incident, page: Page, agent: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The message and its Resolve button."""
    by = f" by {mrkdwn(agent)}" if agent else ""
    text = (
        f":white_check_mark: PagerDuty #{page.number} ({mrkdwn(page.service)}) was resolved in "
        f"PagerDuty{by}. Resolve *{incident.ref}* too?"
    )
    return text, [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": RESOLVE_BUTTON,
                    "text": {"type": "plain_text", "text": f"Resolve {incident.ref}"},
                    "style": "primary",
                    "value": incident.ref,
                }
            ],
        },
    ]


class AskActions:
    """The ``pager.ask_resolve`` ledger action: post the question in the incident channel."""

    def __init__(self, engine: Engine, chat: Chat | None):
        self.engine = engine
        self.chat = chat

    def install(self, registry: ActionRegistry) -> None:
        registry.register("pager.ask_resolve", self.ask, idempotent=True, replace=True)

    def ask(self, ctx: StepContext, input: dict[str, Any]) -> dict[str, Any]:
        with db.transaction(self.engine) as s:
            page = s.get(Page, int(input["page_id"]))
            inc = s.get(Incident, page.incident_id) if page else None
        if page is None or inc is None or self.chat is None:
            return {"skipped": "nothing to ask"}
        if inc.resolved_at is not None or not inc.channel_id:
            return {"skipped": "already resolved or no channel"}
        text, blocks = question(inc, page, input.get("agent"))
        return {"ts": self.chat.post(inc.channel_id, text, blocks)}
