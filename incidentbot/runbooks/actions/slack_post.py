"""``slack.post``: post a message to the incident's channel (or another channel).

Posting is made idempotent: the message carries one section block whose ``block_id`` is
derived from the step's idempotency token, and the channel is searched for it before posting,
so a step re-run after a crash does not post twice.

The text usually quotes params people typed (``{{ params.message }}``) or outputs of other
steps, so it is escaped for Slack mrkdwn as a whole: a ``<!channel>``, ``<@U…>`` or
``<https://…|…>`` in it is shown as those characters and never notifies or links. Formatting
(``*bold*``, ``_italic_``, code, emoji) still works.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentbot.chat_text import mrkdwn
from incidentbot.ledger.actions import PermanentError
from incidentbot.runbooks.actions._common import shown
from incidentbot.runbooks.actions.base import Action, ActionContext

SECTION_LIMIT = 3000  # characters Slack accepts in a section block's text
PREVIEW = 80


class SlackPostInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    channel: str | None = None

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the text is empty: say what to post")
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or value == "#":
            raise ValueError("the channel is empty: give a channel id (C…) or #name")
        return value


def block_id_for(token: str) -> str:
    """The block id that marks the message of the step with this idempotency token."""
    return "runbook-" + hashlib.sha256(token.encode()).hexdigest()[:32]


def _channel(inputs: SlackPostInputs, ctx: ActionContext) -> str | None:
    if inputs.channel:
        return inputs.channel
    return ctx.incident.channel_id if ctx.incident is not None else None


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW else flat[: PREVIEW - 1] + "…"


class SlackPost(Action):
    name = "slack.post"
    description = "Post a message in Slack (default: the incident's channel); never twice."
    idempotent = True
    needs_chat = True
    Inputs = SlackPostInputs
    outputs: ClassVar[dict[str, str]] = {
        "channel": "the channel id the message is in",
        "ts": "the message's timestamp (its id in Slack)",
    }

    def plan(self, inputs: SlackPostInputs, ctx: ActionContext) -> str:
        channel = _channel(inputs, ctx)
        if channel is None:
            where = "the incident's channel (none: this would fail)"
        elif inputs.channel:
            where = channel
        else:
            where = f"the incident's channel ({channel})"
        return shown(ctx, f"post to {where} in Slack: {_preview(inputs.text)}")

    def describe(self, outputs: dict[str, Any]) -> str:
        return "Posted the message in Slack"

    def run(self, inputs: SlackPostInputs, ctx: ActionContext) -> dict[str, Any]:
        chat = ctx.services.chat
        if chat is None:
            raise PermanentError(
                "slack.post needs Slack, which is not available here (for example when the "
                "runbook runs from the command line)"
            )
        channel = _channel(inputs, ctx)
        if channel is None:
            raise PermanentError(
                "slack.post has no channel: give `channel`, or run the runbook for an incident "
                "that has a Slack channel"
            )
        if channel.startswith("#"):
            found = chat.find_channel(channel[1:])
            if found is None:
                raise PermanentError(f"there is no Slack channel {channel}")
            channel = found.id
        text = mrkdwn(shown(ctx, inputs.text))
        block: dict[str, Any] = {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _fit(text)},
        }
        if ctx.idempotency_token:
            block["block_id"] = block_id_for(ctx.idempotency_token)
            ts = chat.find_message(channel, block["block_id"])
            if ts:
                return {"channel": channel, "ts": ts}
        ts = chat.post(channel, text, [block])
        return {"channel": channel, "ts": ts}


def _fit(text: str) -> str:
    if len(text) <= SECTION_LIMIT:
        return text
    return re.sub(r"&[a-z]{0,3}$", "", text[: SECTION_LIMIT - 1]) + "…"
