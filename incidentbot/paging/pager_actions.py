"""What PagerDuty does with a page: the ``pager.*`` ledger steps that trigger, resolve and note
it, and the page's new state as PagerDuty reports it (webhooks, or our own resolve).

Requesting a page, in the change's transaction, is :mod:`incidentbot.paging.flows`. A page that
finally fails is announced in the incident channel with a fallback: the service's Slack on-call
group is mentioned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from incidentbot import db
from incidentbot.chat_text import mrkdwn
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ledger import service as ledger
from incidentbot.ledger.actions import ActionRegistry, PermanentError, StepContext
from incidentbot.ledger.events import LedgerEvent
from incidentbot.ledger.redact import redact_text
from incidentbot.paging import links
from incidentbot.paging.flows import BOT_ACTOR, channel_line, link_channel
from incidentbot.paging.models import Page
from incidentbot.ports import Chat, Pager

log = logging.getLogger(__name__)


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
