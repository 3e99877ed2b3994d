"""``/incident handoff``: post a rotation's handoff now, leave watch notes, acknowledge it.

The handoff message carries an "Acknowledge handoff" button meant for the incoming on-call
(the Slack users PagerDuty's incoming on-call were matched to). Someone else's click gets an
explanation only they see; the right click records the acknowledgement once (a second click,
or a click on an older copy of the same handoff, finds it recorded) and replaces the button
with who acknowledged it and when.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.chat_text import mrkdwn, when
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.handoff import notes
from incidentbot.handoff import service as handoff
from incidentbot.handoff.config import Rotation
from incidentbot.handoff.models import HandoffPost
from incidentbot.ports import Chat, ExternalError, Pager
from incidentbot.slack import after_answer
from incidentbot.slack.reply import Reply
from incidentbot.usecases import handoff as uc
from incidentbot.usecases.core import Actor, Core

log = logging.getLogger(__name__)

BUTTON = "handoff_ack"
ACK_BLOCK = "handoff-ack"
SECTION_LIMIT = 2900  # Slack refuses section text over 3000 characters
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{6,}$")


MAX_NOTE = 1000


def parse(rest: str, settings: Settings) -> dict[str, Any]:
    """The words after ``handoff``: ``[rotation]`` (post it now) or ``note [rotation] <text>``;
    a DomainError says what is wrong."""
    names = [r.name for r in settings.handoff.rotations]
    known = ", ".join(names) or "none configured"
    head, _, tail = rest.strip().partition(" ")
    if head.lower() == "note":
        first, _, after = tail.partition(" ")
        rotation = first.lower() if first.lower() in names and after.strip() else None
        text = _strip_quotes(after.strip() if rotation else tail.strip())
        if not text:
            raise DomainError("`handoff note` needs what the next on-call should watch")
        if len(text) > MAX_NOTE:
            raise DomainError(f"that is {len(text)} characters: at most {MAX_NOTE}")
        return {"action": "note", "rotation": rotation, "text": text}
    if tail:
        raise DomainError("`handoff` takes at most a rotation name")
    if head and head.lower() not in names:
        raise DomainError(f"unknown rotation '{head[:40]}': configured are {known}")
    return {"action": "post", "rotation": head.lower() or None, "text": None}


def _strip_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def post_block_id(rotation: str, handoff_at: datetime) -> str:
    return f"handoff:{rotation}:{int(handoff_at.timestamp())}"


def message_blocks(text: str, h: handoff.Handoff) -> list[dict[str, Any]]:
    """The rendered text in sections (split at line ends), then the acknowledge button."""
    out: list[dict[str, Any]] = []
    chunk = ""
    for line in text.rstrip("\n").split("\n"):
        if chunk and len(chunk) + len(line) + 1 > SECTION_LIMIT:
            out.append(_section(chunk))
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line[:SECTION_LIMIT]
    if chunk.strip():
        out.append(_section(chunk))
    if out:  # the first section names the handoff: a rerun finds the message by it
        out[0]["block_id"] = post_block_id(h.rotation.name, h.shift.handoff_at)
    value = {
        "rotation": h.rotation.name,
        "handoff_at": h.shift.handoff_at.isoformat(),
        "incoming": h.incoming_ids,
    }
    out.append(
        {
            "type": "actions",
            "block_id": ACK_BLOCK,
            "elements": [
                {
                    "type": "button",
                    "action_id": BUTTON,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Acknowledge handoff"},
                    "value": json.dumps(value, separators=(",", ":")),
                }
            ],
        }
    )
    return out


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def acknowledged_block(ack: notes.Ack, timezone: str) -> dict[str, Any]:
    when = ack.at.astimezone(ZoneInfo(timezone)).strftime("%a %d %b %H:%M %Z")
    return {
        "type": "context",
        "block_id": ACK_BLOCK,
        "elements": [
            {
                "type": "mrkdwn",
                "text": f":white_check_mark: Handoff acknowledged by <@{ack.by}> at {when}",
            }
        ],
    }


class HandoffCommands:
    """The Slack door of the handoff. ``scheduled`` and ``remind`` are the scheduler's jobs."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        chat: Chat,
        pager: Pager | None,
        core: Core | None = None,
    ):
        self.settings = settings
        self.engine = engine
        self.chat = chat
        self.pager = pager
        self.core = core or Core(settings, engine)

    def handle(self, args: dict[str, Any], *, user: str, trigger_id: str) -> Reply:
        """One ``/incident handoff …``: a watch note, or the handoff posted now (after the
        answer: building it asks PagerDuty and Slack)."""
        if args["action"] == "note":
            key = f"slack:{trigger_id}" if trigger_id else None
            note = uc.add_note(self.core, Actor(user, "slack"), args.get("rotation"),
                               args["text"], key=key)  # fmt: skip
            return Reply(f"Noted for the next *{note.rotation}* handoff.")
        rotation = uc.rotation(self.core, args.get("rotation"))

        def post() -> Reply:
            try:
                channel, _ts, _h = self.post(rotation)
            except DomainError as exc:
                return Reply(f"The {rotation.name} handoff was not posted: {mrkdwn(str(exc))}.")
            except ExternalError as exc:
                return Reply(f"The {rotation.name} handoff was not posted: Slack said {exc.code}.")
            return Reply(f"Posted the *{rotation.name}* handoff in <#{channel}>.")

        return Reply(
            f"Preparing the *{rotation.name}* handoff for #{rotation.channel}…", follow_up=post
        )

    def channel_id(self, rotation: Rotation) -> str:
        if _CHANNEL_ID.match(rotation.channel):
            return rotation.channel
        found = self.chat.find_channel(rotation.channel)
        if found is None:
            raise DomainError(
                f"the {rotation.name} handoff channel #{rotation.channel} does not exist "
                "or the bot cannot see it"
            )
        return found.id

    def post(
        self, rotation: Rotation, now: datetime | None = None
    ) -> tuple[str, str, handoff.Handoff]:
        """Build, render and post the handoff; returns (channel id, message ts, handoff).

        The first copy of a handoff is recorded (``handoff_post``): its acknowledgement
        reminder goes out from there."""
        h = handoff.build(
            self.engine, self.settings, rotation, pager=self.pager, chat=self.chat, now=now
        )
        channel = self.channel_id(rotation)
        with db.transaction(self.engine) as s:
            row, first = notes.claim_post(s, rotation.name, h.shift.handoff_at,
                                          channel_id=channel, incoming=h.incoming_ids,
                                          now=utcnow())  # fmt: skip
            post_id = row.id
        ts = self._send(channel, h)
        if first:
            with db.transaction(self.engine) as s:
                notes.record_post(s, post_id, ts, utcnow())  # type: ignore[arg-type]
        return channel, ts, h

    def _send(self, channel: str, h: handoff.Handoff) -> str:
        text = handoff.render(h, self.settings.handoff.template_dir)
        ts = self.chat.post(channel, text, message_blocks(text, h))
        log.info("posted the %s handoff in %s (%s)", h.rotation.name, channel, ts)
        return ts

    def scheduled(self, rotation: Rotation, slot: datetime, grace: float) -> str | None:
        """The handoff due at ``slot`` (a scheduler slot), posted once; returns its ts.

        With ``shift_change`` the slot is only when the check ran: the handoff is due when
        PagerDuty's current shift started after the last handoff posted, within ``grace``
        seconds. A rerun after a crash finds the message by its block id instead of posting
        a second one."""
        now = utcnow()
        shift = None
        if rotation.shift_change:
            if self.pager is None:
                raise DomainError("shift_change needs PagerDuty (INCIDENTBOT_PAGERDUTY_API_TOKEN)")
            # PagerDuty not answering fails this check (recorded); the next minute's retries.
            shift = handoff.pager_shift(rotation, now, self.pager)
            if shift is None or (now - shift.handoff_at).total_seconds() > grace:
                return None  # nobody on call, or the current shift began long ago
        h = handoff.build(self.engine, self.settings, rotation, pager=self.pager, chat=self.chat,
                          now=slot if shift is None else now, shift=shift)  # fmt: skip
        handoff_at = h.shift.handoff_at
        channel = self.channel_id(rotation)
        with db.transaction(self.engine) as s:
            row, first = notes.claim_post(s, rotation.name, handoff_at, channel_id=channel,
                                          incoming=h.incoming_ids, now=now)  # fmt: skip
            post_id, ts, posted_in = row.id, row.message_ts, row.channel_id
        if ts is not None:
            return ts  # posted already (scheduled, or by `/incident handoff` first)
        if not first:
            ts = self.chat.find_message(posted_in, post_block_id(rotation.name, handoff_at))
        if ts is None:
            ts = self._send(posted_in, h)
        with db.transaction(self.engine) as s:
            notes.record_post(s, post_id, ts, utcnow())  # type: ignore[arg-type]
        return ts

    def remind(self, now: datetime | None = None) -> int:
        """Remind the incoming on-call of handoffs not acknowledged within
        ``ack_reminder_minutes``, once; only the rotation's latest handoff is reminded of."""
        now = now or utcnow()
        sent = 0
        for rotation in self.settings.handoff.rotations:
            if rotation.ack_reminder_minutes <= 0:
                continue
            cutoff = now - timedelta(minutes=rotation.ack_reminder_minutes)
            with db.transaction(self.engine) as s:
                latest = notes.latest_post(s, rotation.name)
                due = notes.posts_to_remind(s, rotation.name, cutoff)
                for old in due:  # superseded by a later handoff: too late to remind
                    if latest is not None and old.id != latest.id:
                        old.reminded_at = now
                        s.add(old)
                due = [p for p in due if latest is not None and p.id == latest.id]
                pending = [(p.id, p.channel_id, p.message_ts, list(p.incoming), p.handoff_at)
                           for p in due]  # fmt: skip
            for post_id, channel, ts, incoming, handoff_at in pending:
                assert ts is not None
                link = self.chat.permalink(channel, ts)
                who = " ".join(f"<@{u}>" for u in incoming) or "Incoming on-call"
                posted = when(handoff_at, rotation.timezone)
                what = f"<{link}|handoff>" if link else "handoff"
                text = (
                    f":bell: {who}: the *{rotation.name}* {what} of {posted} is not "
                    "acknowledged yet. Read it and press *Acknowledge handoff*."
                )
                try:
                    self.chat.post(channel, text, [])
                except ExternalError as exc:
                    log.warning("handoff reminder for %s not posted: %s", rotation.name, exc)
                    continue
                with db.transaction(self.engine) as s:
                    row = s.get(HandoffPost, post_id)
                    if row is not None:
                        row.reminded_at = now
                        s.add(row)
                sent += 1
        return sent

    def click(
        self,
        *,
        user: str,
        value: str,
        channel_id: str,
        message_ts: str,
        message: dict[str, Any] | None,
    ) -> str | None:
        """An "Acknowledge handoff" click; returns what only the clicker should see, if any."""
        try:
            data = json.loads(value)
            rotation = self.settings.handoff.rotation(str(data["rotation"]))
            handoff_at = datetime.fromisoformat(str(data["handoff_at"]))
            incoming = [str(u) for u in data.get("incoming") or []]
        except (ValueError, KeyError, TypeError):
            return "This handoff's rotation is no longer configured; nothing was recorded."
        try:
            done = uc.acknowledge(self.core, Actor(user, "slack"), rotation.name, handoff_at,
                                  incoming=incoming)  # fmt: skip
        except uc.NotIncoming as exc:
            who = ", ".join(f"<@{u}>" for u in exc.incoming)
            return (
                f"Only the incoming on-call ({who}) can acknowledge this handoff. "
                "If you are taking the shift instead, ask them to hand it over in PagerDuty."
            )
        ack = notes.Ack(done.rotation, done.handoff_at, done.by, done.at)
        new = done.new
        blocks = [
            acknowledged_block(ack, rotation.timezone) if b.get("block_id") == ACK_BLOCK else b
            for b in (message or {}).get("blocks") or []
        ]
        text = str((message or {}).get("text") or f"On-call handoff: {rotation.name}")

        def show() -> None:
            try:
                self.chat.update(channel_id, message_ts, text, blocks)
            except ExternalError as exc:
                log.warning("could not show the %s acknowledgement: %s", rotation.name, exc)

        if blocks:  # the button becomes the acknowledgement once Slack has the answer
            after_answer.then(f"the {rotation.name} acknowledgement shown", show)
        if new:
            return None
        when = ack.at.astimezone(ZoneInfo(rotation.timezone)).strftime("%H:%M %Z")
        return f"Already acknowledged by <@{ack.by}> at {when}."
