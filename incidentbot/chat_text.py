"""Small pieces of chat text shared by the messages the bot writes by itself (handoffs,
reminders): mentions, times in a team's time zone, and escaping what people typed."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo


def who(user: str | None) -> str:
    """A Slack mention for a user id, the text itself for anything else."""
    if not user:
        return "nobody"
    return f"<@{user}>" if user[:1] in ("U", "W") and user.isalnum() else user


def is_user_id(text: str | None) -> bool:
    return bool(text) and text[:1] in ("U", "W") and text.isalnum()  # type: ignore[index,union-attr]


def when(moment: datetime, timezone: str | ZoneInfo) -> str:
    tz = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
    return moment.astimezone(tz).strftime("%a %d %b %H:%M %Z")


def mrkdwn(text: Any) -> str:
    """Slack's escaping of the three control characters, for text people typed."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
