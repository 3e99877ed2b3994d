"""The Slack users a request names: who sent it and whom it mentions (for the people
directory, which looks each up once, off the request path)."""

from __future__ import annotations

import re
from typing import Any

_MENTION = re.compile(r"<@([UW][A-Z0-9]{2,})(?:\|[^<>]*)?>")


def seen_users(body: dict[str, Any]) -> list[str]:
    """User ids in a slash command, an interaction (button, form) or an event."""
    found: list[str] = []
    if isinstance(body.get("user_id"), str):  # slash command
        found.append(body["user_id"])
    user = body.get("user")
    if isinstance(user, dict) and isinstance(user.get("id"), str):  # interaction
        found.append(user["id"])
    event = body.get("event")
    if isinstance(event, dict):
        for key in ("user", "item_user"):
            if isinstance(event.get(key), str):
                found.append(event[key])
    text = body.get("text")
    if isinstance(text, str) and "<@" in text:
        found += _MENTION.findall(text)
    return list(dict.fromkeys(found))
