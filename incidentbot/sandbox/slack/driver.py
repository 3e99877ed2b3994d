"""Driving the bot as Slack does: slash commands, interactions, Events API callbacks.

``BotDriver`` builds each payload from the workspace (real ids, the message a button sits on,
the modal being submitted), signs it and sends it through ``Transport``: to the bot's
``/slack/events`` URL, or as an envelope on its Socket Mode connection (``driver.mode``). It
also plays the people in the workspace: a message, a reaction or a join changes the workspace
and delivers the event Slack would send for it.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from incidentbot.sandbox.slack import payloads
from incidentbot.sandbox.slack.ids import format_ts
from incidentbot.sandbox.slack.models import Ephemeral, Message
from incidentbot.sandbox.slack.transport import (
    ACK_TIMEOUT_S,
    SOCKET_RETRY_REASON,
    Ack,
    SignedRequest,
    Transport,
    sign,
)

EVENT_RETRIES = 3

__all__ = ["ACK_TIMEOUT_S", "EVENT_RETRIES", "Ack", "BotDriver", "SignedRequest", "sign"]


class BotDriver(Transport):
    """Sends signed slash commands, interactions and events to the bot, and records acks."""

    # -- slash commands and interactions -------------------------------------------------

    def slash_command_request(
        self,
        text: str = "",
        *,
        user: str = "alice",
        channel: str = "incidents",
        command: str = "/incident",
    ) -> SignedRequest:
        """Build (without sending) a slash command as ``user`` typed it in ``channel``."""
        who, where = self.ws.user(user), self.ws.channel(channel)
        trigger_id = self.ws.issue_trigger(who.id)
        response_url = self.response_urls.create("commands", who.id, where.id)
        fields = payloads.slash_command(
            self.ws,
            who,
            where,
            command=command,
            text=text,
            trigger_id=trigger_id,
            response_url=response_url,
            verification_token=self.verification_token,
        )
        context = {
            "user": who.id,
            "channel": where.id,
            "trigger_id": trigger_id,
            "response_url": response_url,
        }
        body = urlencode(fields).encode()
        return self.build(
            "slash_command", body, "application/x-www-form-urlencoded", context=context
        )

    def slash_command(
        self,
        text: str = "",
        *,
        user: str = "alice",
        channel: str = "incidents",
        command: str = "/incident",
    ) -> Ack:
        """Send a slash command and return the bot's ack (its immediate answer is applied)."""
        return self.send(
            self.slash_command_request(text, user=user, channel=channel, command=command)
        )

    def _interaction(self, kind: str, payload: dict[str, Any], context: dict[str, Any]) -> Ack:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.send(
            self.build(kind, body, "application/x-www-form-urlencoded", context=context)
        )

    def block_action(
        self,
        action_id: str,
        *,
        user: str = "alice",
        channel: str | None = None,
        message_ts: str | None = None,
        view_id: str | None = None,
        value: Any = None,
    ) -> Ack:
        """Click a button (or pick a value) in a message (``channel`` + ``message_ts``) or modal.

        The element is found by ``action_id`` in the message's or view's blocks, so the payload
        carries its real ``block_id``, type, text and value. ``message_ts`` may also be the ts of
        an ephemeral message ``user`` sees in ``channel``: the payload then says
        ``is_ephemeral`` and carries no ``message``, as Slack's does, and its ``response_url``
        replaces or deletes that ephemeral message.
        """
        who = self.ws.user(user)
        with self.ws.lock:
            chan = msg = view = eph = None
            if view_id is not None:
                view = self.ws.views[view_id]
                blocks = view.data.get("blocks", [])
            elif channel is not None and message_ts is not None:
                chan = self.ws.channel(channel)
                msg = chan.message(message_ts)
                if msg is not None:
                    blocks = msg.blocks
                else:
                    eph = self._ephemeral(chan.id, who.id, message_ts)
                    if eph is None:
                        raise LookupError(f"no message {message_ts} in {chan.name}")
                    blocks = eph.blocks
            else:
                raise ValueError("give channel and message_ts, or view_id")
            block_id, element = payloads.find_element(blocks, action_id)
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id,
            "type": element.get("type"),
            "action_ts": format_ts(time.time()),
        }
        if element.get("type") == "button":
            action.update(text=element.get("text"), value=element.get("value"))
        else:
            action.update(payloads.element_value(element, value))
        trigger_id = self.ws.issue_trigger(who.id)
        response_url = None
        if chan is not None and msg is not None:
            response_url = self.response_urls.create(
                "actions", who.id, chan.id, original_message=msg.ts
            )
        elif chan is not None and eph is not None:
            response_url = self.response_urls.create(
                "actions", who.id, chan.id, original_ephemeral=eph.seq
            )
        payload = payloads.block_action(
            self.ws,
            who,
            action=action,
            trigger_id=trigger_id,
            verification_token=self.verification_token,
            channel=chan,
            message=msg,
            ephemeral=eph,
            view=view,
            response_url=response_url,
        )
        context = {
            "user": who.id,
            "trigger_id": trigger_id,
            "response_url": response_url,
            "view_id": view_id,
        }
        return self._interaction("block_actions", payload, context)

    def _ephemeral(self, channel_id: str, user_id: str, ts: str) -> Ephemeral | None:
        """The ephemeral message with ``ts`` that ``user_id`` still sees in the channel."""
        for eph in self.ws.ephemerals:
            if eph.ts == ts and eph.channel == channel_id and eph.user == user_id:
                return None if eph.deleted else eph
        return None

    def view_submission(
        self, view_id: str, inputs: dict[str, Any] | None = None, *, user: str | None = None
    ) -> Ack:
        """Submit an open modal with ``inputs`` (keyed by action_id or block_id).

        The ack is applied as Slack applies it: empty closes the view, ``errors`` keeps it open
        with the messages, ``update``/``push``/``clear`` change the view stack.
        """
        return self.send(self.view_submission_request(view_id, inputs, user=user))

    def view_submission_request(
        self, view_id: str, inputs: dict[str, Any] | None = None, *, user: str | None = None
    ) -> SignedRequest:
        """Build (without sending) the submission of an open modal (see ``view_submission``)."""
        with self.ws.lock:
            view = self.ws.views[view_id]
            if not view.is_open:
                raise ValueError(f"view {view_id} is not open")
            who = self.ws.user(user or view.user)
            state = payloads.view_state(view, inputs or {})
        trigger_id = self.ws.issue_trigger(who.id)
        payload = payloads.view_submission(
            self.ws,
            who,
            view,
            state,
            trigger_id=trigger_id,
            verification_token=self.verification_token,
        )
        body = urlencode({"payload": json.dumps(payload)}).encode()
        context = {"user": who.id, "view_id": view_id}
        return self.build(
            "view_submission", body, "application/x-www-form-urlencoded", context=context
        )

    def close_view(self, view_id: str, *, user: str | None = None) -> Ack | None:
        """The user presses the modal's close button (``close``: Cancel, Skip).

        Slack's client closes the view; the app hears of it only when the view asked with
        ``notify_on_close``: then a ``view_closed`` interaction is sent and its ack returned."""
        with self.ws.lock:
            view = self.ws.views[view_id]
            if not view.is_open:
                raise ValueError(f"view {view_id} is not open")
            who = self.ws.user(user or view.user)
            view.is_open = False
            notify = bool(view.data.get("notify_on_close"))
            body = view.to_api()
        if not notify:
            return None
        payload = payloads.view_closed(self.ws, who, body, self.verification_token)
        return self._interaction("view_closed", payload, {"user": who.id, "view_id": view_id})

    # -- Events API -------------------------------------------------------------------------

    def event_request(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int = 0,
        retry_reason: str | None = None,
    ) -> SignedRequest:
        """Build an ``event_callback``; a retry reuses the ``event_id`` of the first try."""
        with self._lock:
            self._events += 1
            number = self._events
        event = {"event_ts": format_ts(time.time()), **event}
        event_id = event_id or f"Ev{number:04d}{self.ws.ids.secret(6).upper()}"
        envelope = payloads.event_envelope(
            self.ws, event, event_id=event_id, verification_token=self.verification_token
        )
        return self.build(
            "event_callback",
            json.dumps(envelope).encode(),
            "application/json",
            retry_num=retry_num,
            retry_reason=retry_reason,
            context={"event_id": event_id},
        )

    def send_event(self, event: dict[str, Any], *, retries: int = EVENT_RETRIES) -> list[Ack]:
        """Deliver an event the way Slack does: retry up to ``retries`` times while the bot
        answers with a non-2xx status or too slowly (over Socket Mode: while the envelope goes
        unacknowledged). Returns every attempt's ack."""
        req = self.event_request(event)
        acks = [self.send(req)]
        while not acks[-1].ok and len(acks) <= retries:
            reason = self.retry_reason(acks[-1])
            retry = self.event_request(
                event, event_id=req.context["event_id"], retry_num=len(acks), retry_reason=reason
            )
            acks.append(self.send(retry))
        return acks

    def redeliver(self, ack: Ack, *, reason: str | None = None) -> Ack:
        """Send an event again with the next retry number (``X-Slack-Retry-Num`` or the
        envelope's ``retry_attempt``), as Slack does when it did not see the first answer in
        time, even if the bot did handle it. ``reason`` defaults to ``http_timeout`` over
        HTTP and ``timeout`` over Socket Mode."""
        if ack.kind != "event_callback":
            raise ValueError("Slack only retries Events API deliveries")
        envelope = json.loads(ack.request.body)
        if reason is None:
            reason = SOCKET_RETRY_REASON if self.uses_socket() else "http_timeout"
        retry = self.event_request(
            envelope["event"],
            event_id=envelope["event_id"],
            retry_num=ack.retry_num + 1,
            retry_reason=reason,
        )
        return self.send(retry)

    def url_verification(self, challenge: str = "sandbox-challenge") -> Ack:
        """The handshake Slack sends when a Request URL is saved; the bot must echo it.

        HTTP only: a Socket Mode app has no Request URL to verify.
        """
        if self.uses_socket():
            raise ValueError("url_verification is an HTTP-mode handshake; Socket Mode has none")
        body = {
            "token": self.verification_token,
            "challenge": challenge,
            "type": "url_verification",
        }
        return self.send(
            self.build(
                "url_verification",
                json.dumps(body).encode(),
                "application/json",
                context={"challenge": challenge},
            )
        )

    # -- people doing things (state change plus the event Slack would send) -----------------

    def post_message(
        self,
        user: str,
        channel: str,
        text: str,
        *,
        thread_ts: str | None = None,
        deliver: bool = True,
    ) -> tuple[Message, list[Ack]]:
        """``user`` writes in ``channel``; the bot gets a ``message`` event."""
        who, where = self.ws.user(user), self.ws.channel(channel)
        with self.ws.lock:
            if who.id not in where.members:
                raise ValueError(f"{who.name} is not in #{where.name}")
            msg = self.ws.post(where, who, text, thread_ts=thread_ts, via="human")
        event = {
            "type": "message",
            "channel": where.id,
            "user": who.id,
            "text": text,
            "ts": msg.ts,
            "channel_type": payloads.channel_type(where),
            "team": self.ws.team_id,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return msg, self.send_event(event) if deliver else []

    def add_reaction(
        self, user: str, channel: str, ts: str, reaction: str, *, deliver: bool = True
    ) -> list[Ack]:
        """``user`` reacts to a message; the bot gets ``reaction_added``."""
        who, where = self.ws.user(user), self.ws.channel(channel)
        with self.ws.lock:
            msg = where.message(ts)
            if msg is None:
                raise LookupError(f"no message {ts} in #{where.name}")
            users = msg.reactions.setdefault(reaction, [])
            if who.id not in users:
                users.append(who.id)
        event = {
            "type": "reaction_added",
            "user": who.id,
            "reaction": reaction,
            "item_user": msg.user,
            "item": {"type": "message", "channel": where.id, "ts": ts},
        }
        return self.send_event(event) if deliver else []

    def join_channel(
        self, user: str, channel: str, *, inviter: str | None = None, deliver: bool = True
    ) -> list[Ack]:
        """``user`` joins ``channel``; the bot gets ``member_joined_channel``."""
        who, where = self.ws.user(user), self.ws.channel(channel)
        with self.ws.lock:
            if who.id not in where.members:
                where.members.append(who.id)
        event = {
            "type": "member_joined_channel",
            "user": who.id,
            "channel": where.id,
            "channel_type": "G" if where.is_private else "C",
            "team": self.ws.team_id,
        }
        if inviter:
            event["inviter"] = self.ws.user(inviter).id
        return self.send_event(event) if deliver else []
