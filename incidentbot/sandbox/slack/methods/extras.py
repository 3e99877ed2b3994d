"""pins.add, reactions.add, bookmarks.add and the modal methods views.open / push / update."""

from __future__ import annotations

import re
from typing import Any

from incidentbot.sandbox.slack.blockkit import BlockKitError, validate_view
from incidentbot.sandbox.slack.methods import Args, method
from incidentbot.sandbox.slack.models import Bookmark, OpenView, SlackError, User
from incidentbot.sandbox.slack.workspace import Workspace

VIEW_STACK_MAX = 3
_EMOJI_NAME = re.compile(r"^[a-z0-9_+'-]+(::skin-tone-[2-6])?$")


@method("pins.add")
def pins_add(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    channel = ws.visible_channel(args.str("channel"), caller.id)
    ts = args.str("timestamp")
    if not ts:
        raise SlackError("no_item_specified")
    msg = channel.message(ts)
    if msg is None:
        raise SlackError("message_not_found")
    if msg.pinned:
        raise SlackError("already_pinned")
    msg.pinned = True
    return {}


@method("reactions.add")
def reactions_add(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    if "channel" not in args or "timestamp" not in args:
        raise SlackError("no_item_specified")
    channel = ws.visible_channel(args.str("channel"), caller.id)
    msg = channel.message(args.str("timestamp") or "")
    if msg is None:
        raise SlackError("message_not_found")
    name = (args.str("name") or "").strip(":")
    if not _EMOJI_NAME.match(name):
        raise SlackError("invalid_name")
    users = msg.reactions.setdefault(name, [])
    if caller.id in users:
        raise SlackError("already_reacted")
    users.append(caller.id)
    return {}


@method("bookmarks.add")
def bookmarks_add(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    channel = ws.visible_channel(args.str("channel_id"), caller.id)
    if caller.id not in channel.members:
        raise SlackError("not_in_channel")
    if "title" not in args or "type" not in args:
        raise SlackError("invalid_arguments")
    if args.str("type") != "link":
        raise SlackError("invalid_bookmark_type")
    link = args.str("link") or ""
    if not link.startswith(("https://", "http://")):
        raise SlackError("invalid_link")
    bookmark = Bookmark(
        id=ws.ids.new("Bk"),
        channel_id=channel.id,
        title=args.str("title") or "",
        link=link,
        emoji=args.str("emoji") or "",
        created=int(ws.clock()),
        created_by=caller.id,
        app_id=ws.app_id,
    )
    ws.bookmarks.append(bookmark)
    return {"bookmark": bookmark.to_api(ws.team_id)}


def _checked_view(args: Args) -> dict[str, Any]:
    if "view" not in args:
        raise SlackError("invalid_arguments", response_metadata={"messages": ["view is required"]})
    try:
        return validate_view(args.raw("view"))
    except BlockKitError as exc:
        raise SlackError(
            "invalid_arguments", response_metadata={"messages": [f"[ERROR] {exc}"]}
        ) from None


def _new_view(
    ws: Workspace, user: str, data: dict[str, Any], previous: OpenView | None
) -> OpenView:
    external_id = str(data.get("external_id") or "")
    if external_id and any(v.external_id == external_id and v.is_open for v in ws.views.values()):
        raise SlackError("duplicate_external_id")
    return ws.open_view(user, data, previous, external_id=external_id)


def _trigger(ws: Workspace, args: Args) -> str:
    return ws.use_trigger(args.str("trigger_id") or args.str("interactivity_pointer")).user


@method("views.open")
def views_open(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    data = _checked_view(args)
    user = _trigger(ws, args)
    return {"view": _new_view(ws, user, data, None).to_api()}


@method("views.push")
def views_push(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    data = _checked_view(args)
    user = _trigger(ws, args)
    stack = [v for v in ws.views.values() if v.user == user and v.is_open]
    if not stack:
        raise SlackError("not_found")
    if len(stack) >= VIEW_STACK_MAX:
        raise SlackError("push_limit_reached")
    return {"view": _new_view(ws, user, data, stack[-1]).to_api()}


@method("views.update")
def views_update(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    """Replace an open view's content; a stale ``hash`` is refused as in Slack."""
    data = _checked_view(args)
    view_id, external_id = args.str("view_id"), args.str("external_id")
    if not view_id and not external_id:
        raise SlackError("invalid_arguments")
    view = ws.views.get(view_id or "")
    if view is None and external_id:
        view = next((v for v in ws.views.values() if v.external_id == external_id), None)
    if view is None or not view.is_open:
        raise SlackError("not_found")
    if "hash" in args and args.str("hash") != view.hash:
        raise SlackError("hash_conflict")
    view.data = {**data, "external_id": view.external_id} if view.external_id else data
    view.hash = ws.new_view_hash()
    view.errors = {}
    return {"view": view.to_api()}
