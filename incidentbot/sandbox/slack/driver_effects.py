"""What Slack does with the body of an ack: show an immediate reply, change the modal stack.

A bot may answer a slash command with a message in the ack itself (shown only to the user
unless ``response_type`` is ``in_channel``), and answers a modal submission with a
``response_action`` (``errors``, ``update``, ``push``, ``clear``) or nothing (close the view).
Each function returns a problem description when the bot's answer is one Slack would reject.
"""

from __future__ import annotations

import json
from typing import Any

from incidentbot.sandbox.slack.blockkit import BlockKitError, validate_blocks, validate_view
from incidentbot.sandbox.slack.workspace import Workspace


def apply_command_ack(ws: Workspace, context: dict[str, Any], body: str) -> str | None:
    """Show the message a slash command's ack carries, if any."""
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        data = {"text": body}
    if not isinstance(data, dict):
        return "a slash command ack must be empty, text, or a JSON object"
    text = str(data.get("text") or "")
    try:
        blocks = validate_blocks(data["blocks"]) if data.get("blocks") else []
    except BlockKitError as exc:
        return f"invalid_blocks in ack: {exc}"
    if not text and not blocks:
        return None
    with ws.lock:
        if data.get("response_type") == "in_channel":
            ws.post(ws.channels[context["channel"]], ws.bot, text, blocks=blocks, via="ack")
        else:
            ws.post_ephemeral(context["channel"], context["user"], text, blocks, via="ack")
    return None


def apply_view_ack(ws: Workspace, context: dict[str, Any], data: Any) -> str | None:
    """Apply a view_submission ack to the user's modal stack, as Slack's client does."""
    with ws.lock:
        view = ws.views[context["view_id"]]
        if not data:
            view.is_open = False
            return None
        if not isinstance(data, dict):
            return "a view_submission ack must be empty or a JSON object"
        action = data.get("response_action")
        if action == "errors":
            errors = data.get("errors")
            if not isinstance(errors, dict) or not errors:
                return "response_action errors needs a non-empty errors object"
            view.errors = {str(k): str(v) for k, v in errors.items()}
            return None
        if action == "clear":
            for other in ws.views.values():
                if other.user == view.user:
                    other.is_open = False
            return None
        if action in ("update", "push"):
            try:
                new = validate_view(data.get("view"))
            except BlockKitError as exc:
                return f"invalid view in response_action {action}: {exc}"
            if action == "update":
                view.data, view.errors = new, {}
                view.hash = ws.new_view_hash()
            else:
                ws.open_view(view.user, new, view)
            return None
        return f"unknown response_action {action!r}"
