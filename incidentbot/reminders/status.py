"""Status-update reminders: an open incident that has had no status update for its severity's
cadence gets a reminder for its commander in its channel.

The cadence counts from the last status update (or the declaration, before the first one).
A reminder is sent when the cadence has passed, then again each cadence while nobody posts an
update. "Snooze" moves the next reminder to the end of the snooze; "Dismiss" stops them until
the next update. An update starts the count over: the last reminder's buttons are replaced by
"Status update posted", and earlier snoozes and dismissals no longer apply.

Everything this decides from is in the database (the incident, its timeline, the ``reminder``
row), so a restart forgets neither a pending reminder nor a snooze: the check that runs after
it sends what is due.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from incidentbot import db, policy
from incidentbot.chat_text import mention, mrkdwn, when
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.durations import format_span
from incidentbot.incidents.models import Incident, TimelineEvent
from incidentbot.people import Directory
from incidentbot.ports import Chat, ExternalError
from incidentbot.reminders import blocks, state
from incidentbot.reminders.models import STATUS_UPDATE, Reminder

log = logging.getLogger(__name__)

UPDATE_KIND = "status.update"


@dataclass(frozen=True)
class Due:
    incident_id: int
    ref: str
    channel_id: str
    commander: str | None
    severity: str
    cadence: timedelta
    basis: datetime  # the last update (or the declaration)


@dataclass(frozen=True)
class Cleared:
    channel_id: str
    ts: str
    at: datetime  # when the update that cleared it was posted


def next_reminder(row: Reminder | None, basis: datetime, cadence: timedelta) -> datetime | None:
    """When the next reminder for ``basis`` is due (None: dismissed)."""
    if row is None or row.basis != basis:
        return basis + cadence
    if row.dismissed_at is not None:
        return None
    if row.snoozed_until is not None:
        return row.snoozed_until
    if row.last_sent_at is not None:
        return row.last_sent_at + cadence
    return basis + cadence


def open_incidents(session: Session, settings: Settings, *where: Any) -> list[Incident]:
    """Incidents not in a terminal status (and matching ``where``), by number."""
    query = select(Incident).where(
        col(Incident.status).not_in(policy.terminal_statuses(settings)), *where
    )
    return list(session.exec(query.order_by(col(Incident.number))))


def last_updates(session: Session, incident_ids: list[int]) -> dict[int, datetime]:
    if not incident_ids:
        return {}
    found = session.exec(
        select(TimelineEvent.incident_id, func.max(TimelineEvent.occurred_at))
        .where(TimelineEvent.kind == UPDATE_KIND)
        .where(col(TimelineEvent.incident_id).in_(incident_ids))
        .group_by(col(TimelineEvent.incident_id))
    )
    return {int(i): at for i, at in found}


class StatusReminders:
    def __init__(self, settings: Settings, engine: Engine, chat: Chat):
        self.settings = settings
        self.engine = engine
        self.chat = chat

    def _scan(self, now: datetime) -> tuple[list[Due], list[Cleared]]:
        """What is due now; moves rows whose incident has had an update to the new basis."""
        due: list[Due] = []
        cleared: list[Cleared] = []
        with db.transaction(self.engine) as s:
            incidents = open_incidents(s, self.settings, col(Incident.channel_id).is_not(None))
            updates = last_updates(s, [i.id for i in incidents if i.id is not None])
            rows = state.rows(s, STATUS_UPDATE)
            for inc in incidents:
                assert inc.id is not None and inc.channel_id is not None
                basis = max(inc.declared_at, updates.get(inc.id, inc.declared_at))
                row = rows.get(str(inc.id))
                if row is not None and row.basis != basis:
                    if row.message_ts and row.channel_id and row.basis and basis > row.basis:
                        cleared.append(Cleared(row.channel_id, row.message_ts, basis))
                    state.restart(row, basis, now)
                    s.add(row)
                cadence = policy.severity(self.settings, inc.severity).cadence
                at = next_reminder(row, basis, cadence)
                if at is not None and at <= now:
                    due.append(Due(inc.id, inc.ref, inc.channel_id, inc.commander,
                                   inc.severity, cadence, basis))  # fmt: skip
        return due, cleared

    def check(self, now: datetime | None = None) -> int:
        """Send every reminder that is due; returns how many were sent."""
        now = now or utcnow()
        if not self.settings.reminders.status_updates:
            return 0
        due, cleared = self._scan(now)
        for c in cleared:
            self._mark_cleared(c)
        sent = 0
        for d in due:
            try:
                ts = self._post(d, now)
            except ExternalError as exc:
                log.warning("status update reminder for %s not posted: %s", d.ref, exc)
                continue
            with db.transaction(self.engine) as s:
                row = state.ensure(s, STATUS_UPDATE, str(d.incident_id), now)
                if row.basis != d.basis:
                    state.restart(row, d.basis, now)
                state.sent(row, now, d.channel_id, ts)
                s.add(row)
            sent += 1
        return sent

    def text(self, d: Due, now: datetime) -> str:
        command = self.settings.slack.command
        text = (
            f"*{d.ref}* has had no status update for {format_span(now - d.basis)} "
            f"({d.severity} expects one every {format_span(d.cadence)}). "
            f"Post one with `{mrkdwn(command)} update &lt;what changed&gt;`."
        )
        if d.commander:
            # The configured people: a commander who declared from the CLI is mentioned too.
            who = mention(d.commander, Directory(self.settings.people))
            return f":alarm_clock: {who}: {text}"
        return (
            f":alarm_clock: {text} Nobody is commander: take it with "
            f"`{command} assign commander @you`."
        )

    def _post(self, d: Due, now: datetime) -> str:
        text = self.text(d, now)
        return self.chat.post(
            d.channel_id,
            text,
            blocks.reminder_blocks(
                text,
                kind=STATUS_UPDATE,
                subject=str(d.incident_id),
                basis=d.basis,
                snooze=list(self.settings.reminders.snooze),
                dismiss="Dismiss until the next update",
            ),
        )

    def _mark_cleared(self, c: Cleared) -> None:
        """The last reminder loses its buttons: an update was posted."""
        line = (
            ":white_check_mark: Status update reminder: an update was posted at "
            f"{when(c.at, self.settings.timezone)}."
        )
        try:
            section = {"type": "section", "text": {"type": "mrkdwn", "text": line}}
            self.chat.update(c.channel_id, c.ts, line, [section])
        except ExternalError as exc:
            log.warning("could not clear the status update reminder %s: %s", c.ts, exc)
