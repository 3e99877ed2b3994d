"""What an incident's chat effects write back once done: the column that says an effect is done
(the header's or the digest's ts) with its timeline entry, and the responders' invitation.

Each entry is written exactly once, whatever attempt made the effect: an earlier attempt may
have made it and crashed, or lost Slack's answer, before saving it. A part of
:class:`incidentbot.incidents.flows.ChatActions`, which provides the engine and the bot's id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from incidentbot import db
from incidentbot.clock import utcnow
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.incidents.records import event_row, insert_events
from incidentbot.incidents.row_reads import has_event_on

BOT_ACTOR = "incidentbot"
_INCIDENT = Incident.__table__  # type: ignore[attr-defined]


class EffectSaves:
    """The saves of :class:`~incidentbot.incidents.flows.ChatActions`' effects."""

    # Provided by ChatActions.
    engine: Any
    _bot_id: Any

    def _record(self, incident: Incident, kind: str, summary: str, **data: Any) -> None:
        with db.transaction(self.engine) as s:
            svc.record(
                s, s.get(Incident, incident.id), kind, BOT_ACTOR, summary, now=utcnow(), data=data
            )

    def _save_done(
        self, incident: Incident, column: str, value: str, kind: str, summary: str, **data: Any
    ) -> None:
        """Record an effect as done (``column`` of the incident, e.g. the digest message's ts)
        and its timeline entry in one transaction, the entry only the first time.

        Whether this attempt made the effect or found what an earlier, interrupted attempt made
        (a crash or a lost answer between Slack's side and ours), the entry is written exactly
        once: the column, read under the row lock, says whether it already was."""
        row_is, saved = _INCIDENT.c.id == incident.id, _INCIDENT.c[column]
        with db.transaction(self.engine) as s:
            conn = s.connection()
            # Set only where unset: the row's lock (PostgreSQL re-reads the row once a
            # concurrent writer commits) or SQLite's write lock makes this the only first.
            first = update(_INCIDENT).where(row_is, saved.is_(None)).values({column: value})
            if conn.execute(first).rowcount == 1:
                event = event_row(incident.id, kind, BOT_ACTOR, summary, now=utcnow(), data=data)
                insert_events(s, [event])
            else:
                changed = update(_INCIDENT).where(row_is, saved != value).values({column: value})
                conn.execute(changed)

    def _record_invited(self, inc: Incident, asked: list[str], invited: list[str]) -> None:
        """The responders' invitation, on the timeline once. A retry after a crash or a lost
        answer finds them already in the channel (``invited`` is then empty): the entry names
        the responders asked for, now members, unless an earlier attempt recorded it."""
        bot = self._bot_id()
        users = invited if invited else [u for u in asked if u != bot]
        if not users:
            return
        key = f"effect:{inc.id}:invited"  # unique: the entry cannot be written twice
        with db.transaction(self.engine) as s:
            if has_event_on(s.connection(), key):
                return
            insert_events(s, [event_row(
                inc, "responders.invited", BOT_ACTOR, "Invited " + ", ".join(users),
                now=utcnow(), data={"users": users}, source_key=key,
            )])  # fmt: skip
