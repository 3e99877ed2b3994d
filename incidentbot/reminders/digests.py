"""The scheduled reminders that look at the whole state once a day or once a week:

- **stale incidents**: open longer than ``reminders.stale_after``; the commander is reminded
  in the incident's channel (a "Dismiss" button stops it for that incident);
- **postmortems due and overdue**: from ``reminders.postmortem_due_soon`` days before the due
  date, and every run while overdue, the owner (else the commander) is reminded in the
  incident's channel;
- **overdue action items**, weekly: each owner Slack knows (a Slack user, or a configured
  person with a Slack id) gets their own list by direct message, and the whole list, by owner,
  goes to ``reminders.channel`` (default: the digest channel), without the items of private
  incidents. Owners are mentioned, or named when Slack does not know them; a mention typed in
  an item is shown as ``@Name``, never as a raw Slack id.

Each run records what it sent in the ``reminder`` table; a reminder sent for the same day is
not sent again (a rerun after a crash, or a run from a second scheduler, changes nothing).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from incidentbot import db, policy
from incidentbot.action_items.due import today as team_today
from incidentbot.action_items.report import ItemView, overdue
from incidentbot.chat_text import is_slack_id, mention, mrkdwn, when
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.durations import format_span
from incidentbot.incidents.models import Incident
from incidentbot.ledger.redact import redact_text
from incidentbot.people import Directory
from incidentbot.people.render import event_text, ids_in
from incidentbot.ports import Chat, ExternalError
from incidentbot.postmortems.models import PUBLISHED, Postmortem
from incidentbot.reminders import blocks, state
from incidentbot.reminders.models import ACTION_ITEMS, POSTMORTEM, STALE
from incidentbot.reminders.status import open_incidents

log = logging.getLogger(__name__)

LIST_LIMIT = 25  # items listed per owner; the rest is counted
CHANNEL_LINES = 150  # lines in the digest channel's message (Slack shortens long messages)
DIGEST_SUBJECT = "#digest"  # the reminder row of the digest channel's weekly message


def _person(name: str | None, directory: Directory | None = None) -> str:
    """A mention for someone Slack knows (a Slack user id, or a person of the directory with
    one); else their name, or a name people typed (a free-text owner) escaped, so it is shown
    as written and cannot mention or link anything (``<!here>``)."""
    if directory is not None:
        return mention(name, directory)
    return mention(name) if not name or is_slack_id(name) else mrkdwn(name)


@dataclass(frozen=True)
class Outgoing:
    kind: str
    subject: str
    channel: str
    text: str
    blocks: list[dict]  # type: ignore[type-arg]


class Digests:
    def __init__(self, settings: Settings, engine: Engine, chat: Chat):
        self.settings = settings
        self.engine = engine
        self.chat = chat

    # -- sending with a record -------------------------------------------------------------

    def _already_today(self, kind: str, subject: str, today: date) -> bool:
        with db.transaction(self.engine) as s:
            row = state.get(s, kind, subject)
            if row is None or row.last_sent_at is None:
                return False
            if row.dismissed_at is not None:
                return True
            return team_today(self.settings.timezone, row.last_sent_at) == today

    def _send(self, out: Outgoing, now: datetime) -> bool:
        try:
            ts = self.chat.post(out.channel, out.text, out.blocks)
        except ExternalError as exc:
            log.warning("%s reminder for %s not posted: %s", out.kind, out.subject, exc)
            return False
        with db.transaction(self.engine) as s:
            row = state.ensure(s, out.kind, out.subject, now)
            state.sent(row, now, out.channel, ts)
            s.add(row)
        return True

    # -- stale incidents -------------------------------------------------------------------

    def stale(self, now: datetime | None = None) -> int:
        now = now or utcnow()
        today = team_today(self.settings.timezone, now)
        cutoff = now - self.settings.reminders.stale_after
        with db.transaction(self.engine) as s:
            incidents = open_incidents(s, self.settings, col(Incident.declared_at) <= cutoff)
        sent = 0
        command = self.settings.slack.command
        for inc in incidents:
            subject = str(inc.id)
            if not inc.channel_id or self._already_today(STALE, subject, today):
                continue
            text = (
                f":hourglass: {_person(inc.commander)}: *{inc.ref}* has been open for "
                f"{format_span(now - inc.declared_at)} (declared "
                f"{when(inc.declared_at, self.settings.timezone)}). If it is over, "
                f"`{mrkdwn(command)} resolve &lt;summary&gt;`; if not, post a status update."
            )
            out = Outgoing(
                STALE, subject, inc.channel_id, text,
                blocks.reminder_blocks(text, kind=STALE, subject=subject, basis=None,
                                       dismiss="Stop reminding for this incident"),
            )  # fmt: skip
            sent += self._send(out, now)
        return sent

    # -- postmortems -----------------------------------------------------------------------

    def postmortems(self, now: datetime | None = None) -> int:
        now = now or utcnow()
        today = team_today(self.settings.timezone, now)
        soon = self.settings.reminders.postmortem_due_soon
        with db.transaction(self.engine) as s:
            found = list(
                s.exec(
                    select(Postmortem, Incident)
                    .join(Incident, col(Incident.id) == Postmortem.incident_id)
                    .where(Postmortem.status != PUBLISHED)
                    .where(col(Postmortem.due_date).is_not(None))
                    # A reopened incident is being worked on again: its postmortem waits.
                    .where(col(Incident.status).in_(policy.terminal_statuses(self.settings)))
                    .order_by(col(Postmortem.due_date), col(Incident.number))
                )
            )
        sent = 0
        for pm, inc in found:
            due: date = pm.due_date  # type: ignore[assignment]
            days = (due - today).days
            if days > soon:
                continue
            channel = inc.channel_id or self._digest_channel()
            subject = str(inc.id)
            if channel is None or self._already_today(POSTMORTEM, subject, today):
                continue
            owner = _person(pm.owner or inc.commander)
            if days < 0:
                n = -days
                head = f":rotating_light: {owner}: the postmortem of *{inc.ref}* is overdue "
                head += f"by {n} day{'s' if n != 1 else ''} (it was due {due:%a %d %b})."
            else:
                when = {0: "today", 1: "tomorrow"}.get(days, f"in {days} days")
                head = f":memo: {owner}: the postmortem of *{inc.ref}* is due {when} "
                head += f"({due:%a %d %b})."
            state_now = {"draft": "It is still a draft", "in_review": "It is in review"}.get(
                pm.status, f"It is {pm.status.replace('_', ' ')}"
            )
            text = f"{head} {state_now}: `{self.settings.slack.command} postmortem` shows it."
            out = Outgoing(POSTMORTEM, subject, channel, text,
                           blocks.reminder_blocks(text, kind=POSTMORTEM, subject=subject,
                                                  basis=None))  # fmt: skip
            sent += self._send(out, now)
        return sent

    # -- overdue action items, weekly ------------------------------------------------------

    def _digest_channel(self) -> str | None:
        name = self.settings.reminders.channel or self.settings.channels.digest
        try:
            found = self.chat.find_channel(name)
        except ExternalError as exc:
            log.warning("cannot look up #%s: %s", name, exc)
            return None
        if found is None:
            log.warning("reminders: channel #%s does not exist or the bot cannot see it", name)
            return None
        return found.id

    @staticmethod
    def _line(v: ItemView, today: date, directory: Directory) -> str:
        assert v.item.due_date is not None
        late = (today - v.item.due_date).days
        text = event_text(redact_text(v.item.text), None, directory)  # typed mentions: @Name
        return (
            f"• #{v.item.id} {v.incident_ref}: {mrkdwn(text)} "
            f"(due {v.item.due_date:%a %d %b}, {late} day{'s' if late != 1 else ''} overdue)"
        )

    def action_items(self, now: datetime | None = None) -> int:
        """DMs to each Slack owner and one list in the digest channel; returns messages sent."""
        now = now or utcnow()
        today = team_today(self.settings.timezone, now)
        with db.transaction(self.engine) as s:
            views = overdue(s, self.settings, now=now)
            if not views:
                return 0
            named = [v.item.owner for v in views]
            named += [i for v in views for i in ids_in(v.item.text)]
            directory = Directory.load(s, self.settings.people, named)
            private = _private({v.item.incident_id for v in views}, s)
        # One human is one owner, whether items name them as bob or U0N581U33XT.
        by_owner: dict[str, list[ItemView]] = defaultdict(list)
        owners: dict[str, str] = {}
        for v in views:
            key = directory.key(v.item.owner) if v.item.owner else ""
            owners.setdefault(key, v.item.owner or "")
            by_owner[key].append(v)
        sent = 0
        command = self.settings.slack.command
        for key, mine in sorted(by_owner.items()):
            user = directory.slack_id(owners[key]) if key else None
            if user is None or self._already_today(ACTION_ITEMS, user, today):
                continue
            n = len(mine)
            text = "\n".join(
                [f":clipboard: You have {n} overdue action item{'s' if n != 1 else ''}:",
                 *self._lines(mine, today, directory),
                 f"Mark one done with `{mrkdwn(command)} action done &lt;id&gt;`, or close one "
                 f"that will not be done with "
                 f"`{mrkdwn(command)} action wontdo &lt;id&gt; &lt;reason&gt;`."]
            )  # fmt: skip
            try:
                dm = self.chat.open_dm(user)
            except ExternalError as exc:
                log.warning("overdue action items digest for %s not sent: %s", user, exc)
                continue
            sent += self._send(Outgoing(ACTION_ITEMS, user, dm, text, []), now)
        # The channel is shared: items of private incidents stay out of it.
        shared = {k: [v for v in mine if v.item.incident_id not in private]
                  for k, mine in by_owner.items()}  # fmt: skip
        shared = {k: mine for k, mine in shared.items() if mine}
        channel = self._digest_channel() if shared else None
        if channel is None or self._already_today(ACTION_ITEMS, DIGEST_SUBJECT, today):
            return sent
        total = sum(len(mine) for mine in shared.values())
        lines = [f":clipboard: *Overdue action items*: {total}, by owner"]
        # Named owners first, most items first; items nobody owns last.
        for key, mine in sorted(shared.items(), key=lambda kv: (not kv[0], -len(kv[1]), kv[0])):
            owner = _person(owners[key], directory) if key else "No owner"
            lines.append(f"*{owner}* ({len(mine)})")
            lines.extend(self._lines(mine, today, directory))
        if len(lines) > CHANNEL_LINES:
            lines = [
                *lines[: CHANNEL_LINES - 1],
                f"… and {len(lines) - CHANNEL_LINES + 1} more lines",
            ]
        out = Outgoing(ACTION_ITEMS, DIGEST_SUBJECT, channel, "\n".join(lines), [])
        return sent + self._send(out, now)

    def _lines(self, mine: list[ItemView], today: date, directory: Directory) -> list[str]:
        lines = [self._line(v, today, directory) for v in mine[:LIST_LIMIT]]
        if len(mine) > LIST_LIMIT:
            lines.append(f"… and {len(mine) - LIST_LIMIT} more")
        return lines


def _private(incident_ids: set[int], session: Session) -> set[int]:
    """The private incidents among these."""
    query = select(Incident.id).where(
        col(Incident.id).in_(sorted(incident_ids)), col(Incident.private).is_(True)
    )
    return {i for i in session.exec(query) if i is not None}
