"""Snooze and dismiss clicks on reminders.

A click is recorded on the reminder row it names, for the basis it was sent for: after an
update (a new basis) the click changes nothing and only the clicker is told why. The message's
buttons are replaced by what was decided and by whom; a second click finds it decided.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.chat_text import mrkdwn, when
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.durations import format_span
from incidentbot.errors import DomainError
from incidentbot.ports import Chat, ExternalError
from incidentbot.reminders import blocks, state
from incidentbot.reminders.models import KINDS, STATUS_UPDATE, Reminder
from incidentbot.slack import after_answer

log = logging.getLogger(__name__)

SNOOZE_ACTION = re.compile(rf"^{blocks.SNOOZE}_\d+$")
DISMISS_ACTION = blocks.DISMISS


class ReminderCommands:
    def __init__(self, settings: Settings, engine: Engine, chat: Chat):
        self.settings = settings
        self.engine = engine
        self.chat = chat

    def click(
        self,
        *,
        action_id: str,
        user: str,
        value: str,
        channel_id: str,
        message_ts: str,
        message: dict[str, Any] | None,
    ) -> str | None:
        """A snooze or dismiss click; returns what only the clicker should see, if anything."""
        try:
            kind, subject, basis, minutes = blocks.read_value(value)
        except (ValueError, KeyError, TypeError):
            return "This button is not one the bot made; nothing was changed."
        if kind not in KINDS:
            return "This reminder is not one the bot knows; nothing was changed."
        snoozing = action_id != DISMISS_ACTION
        if snoozing and (kind != STATUS_UPDATE or minutes is None):
            return "This reminder cannot be snoozed; nothing was changed."
        now = utcnow()
        try:
            with db.transaction(self.engine) as s:
                if snoozing:
                    assert minutes is not None
                    decision = state.snooze(s, kind, subject, basis=basis, minutes=minutes,
                                            actor=user, now=now)  # fmt: skip
                else:
                    decision = state.dismiss(s, kind, subject, basis=basis, actor=user, now=now)
                row = decision.row
                line = self._line(kind, row)
        except DomainError as exc:
            return f"Nothing was changed: {mrkdwn(str(exc))}."
        self._show(channel_id, message_ts, message, line)
        if decision.changed:
            return None
        return f"Already decided: {line}"

    def _line(self, kind: str, row: Reminder) -> str:
        if row.dismissed_by is not None:
            if kind == STATUS_UPDATE:
                return (
                    f":no_bell: Dismissed by <@{row.dismissed_by}>: no more reminders until the "
                    "next status update."
                )
            return f":no_bell: Dismissed by <@{row.dismissed_by}>: no more reminders of this."
        until = row.snoozed_until
        assert until is not None
        return (
            f":zzz: Snoozed by <@{row.snoozed_by}> for {format_span(until - row.updated_at)}: "
            f"next reminder {when(until, self.settings.timezone)}."
        )

    def _show(self, channel_id: str, ts: str, message: dict[str, Any] | None, line: str) -> None:
        if not channel_id or not ts or message is None:
            return
        text = str(message.get("text") or line)
        shown = blocks.outcome_blocks(message.get("blocks") or [], line)

        def show() -> None:
            try:
                self.chat.update(channel_id, ts, text, shown)
            except ExternalError as exc:
                log.warning("could not show the reminder decision: %s", exc)

        # The buttons become the decision once Slack has the answer.
        after_answer.then("the reminder decision shown", show)
