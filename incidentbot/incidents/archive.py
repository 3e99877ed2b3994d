"""Incident channels tidy themselves: a warning, then archived, a set time after close.

``channels.archive_after`` (e.g. ``7d``; off when unset) and ``channels.archive_warning`` (e.g.
``1d`` before) drive it. The ``channels.archive`` scheduled job (:func:`queue_due`) queues a
durable run for each warning and each archive that has come due, keyed by the incident and the
moment it closed, so a slot fired twice, two replicas or a restart queue each once. The runs'
actions (:class:`ArchiveActions`) look at the incident again when they run: one reopened (or
closed again later) since is left alone, which is how a reopen cancels a pending archive.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from incidentbot import db
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents.effects import CHAT_RETRY, CHAT_TIMEOUT
from incidentbot.incidents.models import Incident, TimelineEvent
from incidentbot.ledger import service as ledger
from incidentbot.ledger.actions import ActionRegistry, PermanentError, StepContext
from incidentbot.ledger.actions import registry as default_registry
from incidentbot.ports import Chat

log = logging.getLogger(__name__)

BOT_ACTOR = "incidentbot"
# Incidents closed longer ago than archive_after plus this are not looked at again: a bot down
# for longer leaves their channels as they are rather than scanning every closed incident.
LOOKBACK = timedelta(days=30)
WARNED = "channel.archive_warned"
ARCHIVED = "channel.archived"


def _closed_key(closed_at: datetime) -> int:
    return int(closed_at.timestamp())


def _step(name: str, action: str, closed: int) -> dict[str, Any]:
    return {
        "name": name,
        "action": action,
        "input": {"closed": closed},
        "idempotent": True,
        "retry": CHAT_RETRY,
        "timeout": CHAT_TIMEOUT,
    }


def queue_due(engine: Engine, settings: Settings, now: datetime) -> int:
    """Queue the warnings and archives due at ``now``; the number newly queued."""
    after = settings.channels.archive_after
    if after is None:
        return 0
    warning = settings.channels.archive_warning or timedelta(0)
    queued = 0
    with db.transaction(engine) as s:
        rows = s.exec(
            select(Incident)
            .where(Incident.status == "closed")
            .where(col(Incident.channel_id).is_not(None))
            .where(col(Incident.closed_at) <= now - after + warning)
            .where(col(Incident.closed_at) > now - after - LOOKBACK)
            .order_by(col(Incident.id))
        ).all()
        for inc in rows:
            assert inc.closed_at is not None
            closed = _closed_key(inc.closed_at)
            due = inc.closed_at + after
            if warning and now < due:
                queued += _start(s, inc, "archive_warning", "Warn of the archive", closed)
            if now >= due:
                queued += _start(s, inc, "archive", "Archive the channel", closed)
    return queued


_ACTIONS = {"archive_warning": "chat.archive_warning", "archive": "chat.archive_channel"}


def _start(s: Session, inc: Incident, what: str, name: str, closed: int) -> int:
    """Queue the run for this close of the incident unless it already was (0 then)."""
    key = f"{inc.ref}:{what}:{closed}"
    if ledger.get_by_key(s, key) is not None:
        return 0
    step = _step(name, _ACTIONS[what], closed)
    ledger.start_run(
        s, kind=f"incident.{what}", key=key, steps=[step], incident_id=inc.id, actor=BOT_ACTOR
    )
    return 1


def when_text(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


class ArchiveActions:
    """The ``chat.archive_warning`` and ``chat.archive_channel`` ledger actions."""

    def __init__(self, chat: Chat, engine: Engine, settings: Settings, render: Any):
        self.chat = chat
        self.engine = engine
        self.settings = settings
        self.render = render

    def install(self, registry: ActionRegistry = default_registry) -> None:
        registry.register("chat.archive_warning", self.warn, idempotent=True, replace=True)
        registry.register("chat.archive_channel", self.archive, idempotent=True, replace=True)

    def _still_due(self, ctx: StepContext, closed: int) -> Incident | None:
        """The incident when it is still closed since the close that queued this run."""
        with db.transaction(self.engine) as s:
            inc = s.get(Incident, ctx.incident_id)
            if inc is None:
                raise PermanentError(f"incident id {ctx.incident_id} does not exist")
            if inc.status != "closed" or inc.closed_at is None or not inc.channel_id:
                return None
            return inc if _closed_key(inc.closed_at) == closed else None

    def _record_once(self, inc: Incident, kind: str, summary: str, closed: int) -> None:
        """The timeline entry for this close, written once however often the step runs."""
        with db.transaction(self.engine) as s:
            row = s.get(Incident, inc.id, with_for_update=True)
            assert row is not None
            seen = s.exec(
                select(TimelineEvent)
                .where(TimelineEvent.incident_id == inc.id)
                .where(TimelineEvent.kind == kind)
            ).all()
            if any(e.data.get("closed") == closed for e in seen):
                return
            svc.record(s, row, kind, BOT_ACTOR, summary, now=utcnow(), data={"closed": closed})

    def warn(self, ctx: StepContext, input: dict[str, Any]) -> dict[str, Any]:
        closed = int(input["closed"])
        inc = self._still_due(ctx, closed)
        if inc is None:
            return {"skipped": "reopened"}
        after = self.settings.channels.archive_after
        assert inc.closed_at is not None and inc.channel_id is not None and after is not None
        when = when_text(inc.closed_at + after)
        text, blocks = self.render.plain(
            f":file_cabinet: {inc.ref} is closed: this channel will be archived on {when}. "
            f"To keep it, reopen the incident (`/incident reopen`)."
        )
        self.chat.post(inc.channel_id, text, blocks)
        self._record_once(inc, WARNED, f"The channel will be archived on {when}", closed)
        return {"channel": inc.channel_id, "archive_at": when}

    def archive(self, ctx: StepContext, input: dict[str, Any]) -> dict[str, Any]:
        closed = int(input["closed"])
        inc = self._still_due(ctx, closed)
        if inc is None:
            return {"skipped": "reopened"}
        assert inc.channel_id is not None
        self.chat.archive_channel(inc.channel_id)
        after = self.settings.channels.archive_after
        summary = f"Archived the channel, {_span(after)} after the incident closed"
        self._record_once(inc, ARCHIVED, summary, closed)
        log.info("archived the channel of %s", inc.ref)
        return {"channel": inc.channel_id}


def _span(delta: timedelta | None) -> str:
    seconds = int(delta.total_seconds()) if delta else 0
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
