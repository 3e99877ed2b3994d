"""conversations.*: create, rename, info, invite, join, topic, purpose, archive, members, list,
history."""

from __future__ import annotations

from typing import Any

from incidentbot.sandbox.slack.ids import parse_ts
from incidentbot.sandbox.slack.methods import Args, method, paginate
from incidentbot.sandbox.slack.models import Channel, SlackError, User
from incidentbot.sandbox.slack.workspace import Workspace, check_channel_name

TOPIC_MAX = 250


def _member_channel(ws: Workspace, caller: User, args: Args) -> Channel:
    """A channel the caller may change: visible, not archived, and the caller is in it."""
    channel = ws.visible_channel(args.str("channel"), caller.id)
    if channel.is_archived:
        raise SlackError("is_archived")
    if caller.id not in channel.members:
        raise SlackError("not_in_channel")
    return channel


@method("conversations.create")
def create(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    name = args.str("name") or ""
    check_channel_name(name)
    if ws.channel_by_name(name) is not None:
        raise SlackError("name_taken")
    channel = ws.add_channel(name, creator=caller.id, is_private=args.bool("is_private"))
    return {"channel": channel.to_api(caller.id)}


def _check_open_and_joined(channel: Any, caller: User) -> None:
    """What renaming or inviting into a channel needs: not a DM, not archived, the caller in it."""
    if channel.is_im:
        raise SlackError("method_not_supported_for_channel_type")
    if channel.is_archived:
        raise SlackError("is_archived")
    if caller.id not in channel.members:
        raise SlackError("not_in_channel")


@method("conversations.rename")
def rename(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    """Rename a channel: only its creator or an admin may (``not_authorized``), only while it is
    not archived and the caller is in it; the new name follows the rules of ``create``.
    Renaming a channel to the name it has is not an error; the old name is kept in
    ``previous_names`` as Slack does."""
    channel = ws.visible_channel(args.str("channel"), caller.id)
    _check_open_and_joined(channel, caller)
    if caller.id != channel.creator and not caller.is_admin:
        raise SlackError("not_authorized")
    name = args.str("name") or ""
    check_channel_name(name)
    with ws.lock:
        other = ws.channel_by_name(name)
        if other is not None and other is not channel:
            raise SlackError("name_taken")
        if name != channel.name:
            if channel.name not in channel.previous_names:
                channel.previous_names.append(channel.name)
            channel.name = name
    return {"channel": channel.to_api(caller.id)}


@method("conversations.info")
def info(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    channel = ws.visible_channel(args.str("channel"), caller.id)
    return {"channel": channel.to_api(caller.id)}


@method("conversations.invite")
def invite(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    """Invite users; all-or-nothing like Slack without ``force``."""
    channel = ws.visible_channel(args.str("channel"), caller.id)
    _check_open_and_joined(channel, caller)
    user_ids = args.list("users")
    if not user_ids:
        raise SlackError("no_user")
    if len(user_ids) > 1000:
        raise SlackError("too_many_users")
    for user_id in user_ids:
        if user_id not in ws.users:
            raise SlackError("user_not_found")
        if user_id == caller.id:
            raise SlackError("cant_invite_self")
    for user_id in user_ids:
        if user_id in channel.members:
            raise SlackError(
                "already_in_channel",
                errors=[{"user": user_id, "ok": False, "error": "already_in_channel"}],
            )
    channel.members.extend(dict.fromkeys(user_ids))
    return {"channel": channel.to_api(caller.id)}


@method("conversations.join")
def join(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    channel = ws.visible_channel(args.str("channel"), caller.id)
    if channel.is_private or channel.is_im:
        raise SlackError("method_not_supported_for_channel_type")
    if channel.is_archived:
        raise SlackError("is_archived")
    if caller.id in channel.members:
        return {
            "channel": channel.to_api(caller.id),
            "warning": "already_in_channel",
            "response_metadata": {"warnings": ["already_in_channel"]},
        }
    channel.members.append(caller.id)
    return {"channel": channel.to_api(caller.id)}


def _set_text(ws: Workspace, caller: User, args: Args, field: str) -> dict[str, Any]:
    channel = _member_channel(ws, caller, args)
    value = args.str(field) or ""
    if len(value) > TOPIC_MAX:
        raise SlackError("too_long")
    target = channel.topic if field == "topic" else channel.purpose
    target.value, target.creator, target.last_set = value, caller.id, int(ws.clock())
    return {"channel": channel.to_api(caller.id)}


@method("conversations.setTopic")
def set_topic(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    return _set_text(ws, caller, args, "topic")


@method("conversations.setPurpose")
def set_purpose(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    return _set_text(ws, caller, args, "purpose")


@method("conversations.archive")
def archive(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    channel = ws.visible_channel(args.str("channel"), caller.id)
    if channel.is_im:
        raise SlackError("method_not_supported_for_channel_type")
    if channel.is_archived:
        raise SlackError("already_archived")
    if channel.is_general:
        raise SlackError("cant_archive_general")
    if caller.id not in channel.members:
        raise SlackError("not_in_channel")
    channel.is_archived = True
    return {}


@method("conversations.members")
def members(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    channel = ws.visible_channel(args.str("channel"), caller.id)
    page, cursor = paginate(channel.members, args)
    return {"members": page, "response_metadata": {"next_cursor": cursor}}


@method("conversations.list")
def list_(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    types = set(args.list("types") or ["public_channel"])
    unknown = types - {"public_channel", "private_channel", "im", "mpim"}
    if unknown:
        raise SlackError("invalid_types")
    visible = []
    for channel in ws.channels.values():
        if args.bool("exclude_archived") and channel.is_archived:
            continue
        if channel.is_im:
            wanted = "im" in types and caller.id in channel.members
        elif channel.is_private:
            wanted = "private_channel" in types and caller.id in channel.members
        else:
            wanted = "public_channel" in types
        if wanted:
            visible.append(channel.to_api(caller.id))
    page, cursor = paginate(visible, args)
    return {"channels": page, "response_metadata": {"next_cursor": cursor}}


@method("conversations.open")
def open_(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    """Open the bot's DM with one user (multi-person DMs are not modelled)."""
    users = args.list("users")
    if len(users) != 1:
        raise SlackError("not_enough_users" if not users else "too_many_users")
    user = ws.users.get(users[0])
    if user is None:
        raise SlackError("user_not_found")
    channel = ws.im_with(user.id)
    return {
        "channel": {"id": channel.id} if not args.bool("return_im") else channel.to_api(caller.id)
    }


def _ts_bound(args: Args, name: str, error: str) -> float | None:
    value = args.str(name)
    if not value:
        return None
    try:
        return float(value) if "." not in value else parse_ts(value)
    except ValueError:
        raise SlackError(error) from None


@method("conversations.history")
def history(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    """Newest first, thread replies left out, bounded by ``latest``/``oldest`` like Slack."""
    channel = ws.visible_channel(args.str("channel"), caller.id)
    latest = _ts_bound(args, "latest", "invalid_ts_latest")
    oldest = _ts_bound(args, "oldest", "invalid_ts_oldest")
    inclusive = args.bool("inclusive")
    limit = max(1, min(args.int("limit", 100, error="invalid_limit"), 999))
    picked = []
    for msg in reversed(channel.messages):
        if msg.thread_ts and msg.thread_ts != msg.ts:
            continue
        when = parse_ts(msg.ts)
        if latest is not None and (when > latest or (when == latest and not inclusive)):
            continue
        if oldest is not None and (when < oldest or (when == oldest and not inclusive)):
            continue
        picked.append(msg)
    page = picked[:limit]
    profile = ws.bot_profile()
    return {
        "messages": [m.to_api(channel.id, profile if m.bot_id else None) for m in page],
        "has_more": len(picked) > limit,
        "pin_count": sum(1 for m in channel.messages if m.pinned),
        "channel_actions_ts": None,
        "channel_actions_count": 0,
    }
