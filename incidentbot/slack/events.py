"""The Slack events the bot listens to: a pushpin puts a message on the incident's timeline,
the action-item reaction makes it an action item, a person joining the channel is recorded.

Each is recorded before Slack hears it was received (Bolt answers once the listener returned)
and deduplicated by what it describes, so Slack's retries change nothing; the confirmation only
the reactor sees is posted once the answer is out (:mod:`incidentbot.slack.after_answer`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from sqlalchemy.exc import IntegrityError

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.slack import after_answer
from incidentbot.slack.action_commands import ActionCommands
from incidentbot.usecases.core import Core

log = logging.getLogger(__name__)


def register(app: App, core: Core, actions: ActionCommands | None) -> None:
    settings, engine = core.settings, core.engine

    @app.event("reaction_added")
    def on_reaction(body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
        if actions is not None and event.get("reaction") == settings.action_items.reaction:
            _action_from_reaction(event, client)
        if event.get("reaction") != settings.slack.pin_reaction:
            return
        found = _reacted_in_incident(event)
        if found is None:
            return
        incident, channel, ts = found
        message = _fetch_message(client, channel, ts)
        if message is None:
            log.info("pinned message %s/%s is gone; not recorded", channel, ts)
            return
        author = message.get("user") or message.get("bot_id") or "unknown"
        at = datetime.fromtimestamp(float(ts), UTC)
        try:
            with db.transaction(engine) as s:
                svc.add_note(
                    s,
                    settings,
                    incident.ref,
                    message.get("text") or "(no text)",
                    actor=author,
                    occurred_at=at,
                    kind="timeline.pinned",
                    source_key=f"pin:{channel}:{ts}",
                )
        except IntegrityError:
            log.debug("message %s/%s already on the timeline", channel, ts)

    def _reacted_in_incident(event: dict[str, Any]) -> tuple[Any, str, str] | None:
        """The incident, channel and ts of a reaction to a message in an incident's channel."""
        item = event.get("item") or {}
        if item.get("type") != "message":
            return None
        channel, ts = item.get("channel", ""), item.get("ts", "")
        with db.transaction(engine) as s:
            incident = svc.get_by_channel(s, channel)
        return None if incident is None else (incident, channel, ts)

    def _action_from_reaction(event: dict[str, Any], client: WebClient) -> None:
        """The reacted-to message becomes an action item, once; the reactor creates it."""
        assert actions is not None
        found = _reacted_in_incident(event)
        if found is None:
            return
        incident, channel, ts = found
        if actions.already_from(channel, ts):
            return
        message = _fetch_message(client, channel, ts)
        if message is None:
            log.info("message %s/%s is gone; no action item made", channel, ts)
            return
        reactor = event.get("user") or "unknown"
        out = actions.from_reaction(
            incident=incident,
            channel=channel,
            ts=ts,
            text=message.get("text") or "",
            author=message.get("user") or message.get("bot_id") or "unknown",
            reactor=reactor,
        )
        if out is None:
            return
        text = out.text
        after_answer.then(
            "the action item's confirmation",
            lambda: client.chat_postEphemeral(channel=channel, user=reactor, text=text),
        )

    @app.event("member_joined_channel")
    def on_join(body: dict[str, Any], event: dict[str, Any]) -> None:
        with db.transaction(engine) as s:
            incident = svc.get_by_channel(s, event.get("channel", ""))
        if incident is None:
            return
        user = event.get("user", "")
        try:
            with db.transaction(engine) as s:
                svc.record(
                    s,
                    svc.get(s, incident.ref),
                    "participant.joined",
                    user,
                    f"{user} joined the channel",
                    now=datetime.now(UTC),
                    data={"people": [user]},
                    source_key=f"event:{body.get('event_id')}",
                )
        except IntegrityError:
            log.debug("event %s already recorded", body.get("event_id"))

    @app.event("message")
    def on_message(body: dict[str, Any]) -> None:
        """Messages are read only when pinned; acknowledging here keeps Bolt quiet."""


def _fetch_message(client: WebClient, channel: str, ts: str) -> dict[str, Any] | None:
    data = client.conversations_history(channel=channel, latest=ts, inclusive=True, limit=1)
    for message in data.get("messages") or []:
        if message.get("ts") == ts:
            return dict(message)
    return None
