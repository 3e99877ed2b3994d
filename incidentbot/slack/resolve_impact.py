"""The resolve asks when the impact started: ``/incident resolve <summary>`` on an incident
whose impact start is not recorded resolves it as always, then opens a form (with the
command's trigger id) asking when the impact started.

The answer is a relative time (``20m ago``), a time of day in the team's time zone, a date and
time, or “same as detected” / “same as declared”; it is recorded as the ``impact_started``
milestone, given at the resolve by whoever answered (the postmortem's metrics say so). Skip
closes the form and records nothing. An answer that is not a time is shown under the field
and nothing is recorded.
"""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.models.blocks import (
    InputBlock,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from incidentbot.chat_text import mrkdwn
from incidentbot.errors import DomainError
from incidentbot.slack.reply import Reply
from incidentbot.usecases import postmortems as uc
from incidentbot.usecases.core import Actor, Core

CALLBACK = "resolve_impact_started"
BLOCK = "when"


def ask(core: Core, ref: str, channel_id: str, reply: Reply) -> Reply:
    """``reply`` (the resolve's answer), opening the form when the impact start is missing."""
    try:
        question = uc.impact_start_question(core, ref)
    except DomainError:
        return reply
    if question is None:
        return reply
    reply.open_modal = True
    reply.modal_args = {"view": view(question, channel_id)}
    return reply


def view(question: uc.ImpactStartQuestion, channel_id: str) -> dict[str, Any]:
    """The form: one field, with the times “same as …” stands for."""
    same = [
        f"same as {name} ({when})"
        for name, when in (("detected", question.detected), ("declared", question.declared))
        if when
    ]
    hint = (
        f"20m ago, 14:05 ({question.timezone}), yesterday 23:50, 2026-11-22 05:10"
        + (f", or {' / '.join(same)}" if same else "")
        + ". Skip if no one knows."
    )
    built = View(
        type="modal",
        callback_id=CALLBACK,
        title=PlainTextObject(text=f"{question.ref} impact"[:24]),
        submit=PlainTextObject(text="Record"),
        close=PlainTextObject(text="Skip"),
        private_metadata=json.dumps({"ref": question.ref, "channel": channel_id}),
        blocks=[
            SectionBlock(
                text=f"*{question.ref} is resolved.* When did the impact start? The postmortem "
                "measures time to detect, mitigate and resolve from it."
            ),
            InputBlock(
                block_id=BLOCK,
                label="Impact started",
                hint=hint[:2000],
                element=PlainTextInputElement(
                    action_id="value", max_length=100, placeholder="20m ago"
                ),
            ),
        ],
    )
    built.validate_json()
    return built.to_dict()


def submit(core: Core, user: str, view: dict[str, Any]) -> tuple[dict[str, str] | None,
                                                                   Reply | None, str]:  # fmt: skip
    """(per-field errors, confirmation, channel) for a submitted form."""
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    channel = str(meta.get("channel") or "")
    values = (view.get("state") or {}).get("values") or {}
    text = str(((values.get(BLOCK) or {}).get("value") or {}).get("value") or "")
    try:
        done = uc.give_impact_start(core, Actor(user, "slack"), str(meta.get("ref") or ""), text)
    except DomainError as exc:
        message = str(exc)
        return {BLOCK: message[:1].upper() + message[1:150]}, None, channel
    metrics = " · ".join(
        f"{label.removeprefix('Time to ').lower()} {mrkdwn(value)}" for label, value in done.metrics
    )
    return (
        None,
        Reply(
            f"Recorded: the impact of *{done.ref}* started at {done.at:%Y-%m-%d %H:%M} UTC "
            f"(given at resolve). Time to {metrics}."
        ),
        channel,
    )
