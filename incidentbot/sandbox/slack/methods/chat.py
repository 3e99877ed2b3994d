"""chat.*: postMessage, update, postEphemeral, getPermalink."""

from __future__ import annotations

from typing import Any

from incidentbot.sandbox.slack.blockkit import BlockKitError, load_json_arg, validate_blocks
from incidentbot.sandbox.slack.methods import Args, method
from incidentbot.sandbox.slack.models import Channel, SlackError, User
from incidentbot.sandbox.slack.workspace import Workspace

TEXT_MAX = 40_000


def message_content(
    args: Args, *, require: bool = True
) -> tuple[str | None, list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    """``(text, blocks, attachments)`` from the arguments, validated as Slack does.

    ``None`` means "not given", which matters for chat.update: only what is given changes.
    """
    text = args.str("text")
    blocks = None
    if "blocks" in args:
        try:
            blocks = validate_blocks(args.raw("blocks"))
        except BlockKitError as exc:
            raise SlackError(
                "invalid_blocks", response_metadata={"messages": [f"[ERROR] {exc}"]}
            ) from None
    attachments = None
    if "attachments" in args:
        try:
            loaded = load_json_arg(args.raw("attachments"))
        except BlockKitError:
            raise SlackError("invalid_attachments") from None
        if not isinstance(loaded, list):
            raise SlackError("invalid_attachments")
        attachments = loaded
    if require and not (text or blocks or attachments):
        raise SlackError("no_text")
    if text is not None and len(text) > TEXT_MAX:
        raise SlackError("msg_too_long")
    return text, blocks, attachments


def _target(ws: Workspace, caller: User, ref: str | None) -> Channel:
    """Where chat.postMessage posts: a channel id, ``#name`` or ``name``, or a user id (their DM).

    Slack takes a channel's name with or without the ``#``; a private channel by name is found
    only by its members, as by id.
    """
    if not ref:
        raise SlackError("channel_not_found")
    if ref.startswith(("U", "W")) and ref in ws.users:
        return ws.im_with(ref)
    if ref not in ws.channels:
        channel = ws.channel_by_name(ref.removeprefix("#"))
        if channel is None:
            raise SlackError("channel_not_found")
        ref = channel.id
    return ws.visible_channel(ref, caller.id)


@method("chat.postMessage")
def post_message(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    channel = _target(ws, caller, args.str("channel"))
    if channel.is_archived:
        raise SlackError("is_archived")
    if caller.id not in channel.members:
        raise SlackError("not_in_channel")
    text, blocks, attachments = message_content(args)
    msg = ws.post(
        channel,
        caller,
        text or "",
        blocks=blocks,
        attachments=attachments,
        thread_ts=args.str("thread_ts") or None,
    )
    profile = ws.bot_profile() if msg.bot_id else None
    return {"channel": channel.id, "ts": msg.ts, "message": msg.to_api(channel.id, profile)}


@method("chat.update")
def update(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    """Edit a message in place; only its author may, and not in an archived channel."""
    channel = ws.visible_channel(args.str("channel"), caller.id)
    msg = channel.message(args.str("ts") or "")
    if msg is None:
        raise SlackError("message_not_found")
    if msg.user != caller.id:
        raise SlackError("cant_update_message")
    if channel.is_archived:
        raise SlackError("is_inactive")
    text, blocks, attachments = message_content(args)
    if text is not None:
        msg.text = text
    if blocks is not None:
        msg.blocks = blocks
    if attachments is not None:
        msg.attachments = attachments
    msg.edits += 1
    # The vendor schema types message.blocks as an object, so the echo carries text only.
    return {"channel": channel.id, "ts": msg.ts, "text": msg.text, "message": {"text": msg.text}}


@method("chat.postEphemeral")
def post_ephemeral(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    channel = ws.visible_channel(args.str("channel"), caller.id)
    if channel.is_archived:
        raise SlackError("is_archived")
    user_id = args.str("user") or ""
    if user_id not in ws.users or user_id not in channel.members:
        raise SlackError("user_not_in_channel")
    text, blocks, _ = message_content(args)
    eph = ws.post_ephemeral(channel.id, user_id, text or "", blocks or [], via="chat.postEphemeral")
    return {"message_ts": eph.ts}


@method("chat.getPermalink")
def get_permalink(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    channel = ws.visible_channel(args.str("channel"), caller.id)
    msg = channel.message(args.str("message_ts") or "")
    if msg is None:
        raise SlackError("message_not_found")
    link = f"{ws.web_url}/archives/{channel.id}/p{msg.ts.replace('.', '')}"
    if msg.thread_ts and msg.thread_ts != msg.ts:
        link += f"?thread_ts={msg.thread_ts}&cid={channel.id}"
    return {"channel": channel.id, "permalink": link}
