"""Small pieces of chat text shared by the messages the bot writes by itself (handoffs,
reminders): mentions, times in a team's time zone, and escaping what people typed."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


def plain_id(actor: str | None) -> str:
    """``slack:U123`` → ``U123``; anything else as it is (stripped)."""
    return (actor or "").strip().removeprefix("slack:")


def is_slack_id(actor: str | None) -> bool:
    return bool(_SLACK_ID.match(plain_id(actor)))


def who(user: str | None) -> str:
    """A Slack mention for a user id, the text itself for anything else."""
    if not user:
        return "nobody"
    return f"<@{plain_id(user)}>" if is_slack_id(user) else user


def when(moment: datetime, timezone: str | ZoneInfo) -> str:
    tz = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
    return moment.astimezone(tz).strftime("%a %d %b %H:%M %Z")


def mrkdwn(text: Any) -> str:
    """Slack's escaping of the three control characters, for text people typed."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def channel_name(value: str) -> str:
    """A channel as configured (``#oncall`` or ``oncall``), without the ``#``; ValueError if
    empty."""
    value = value.strip().removeprefix("#")
    if not value:
        raise ValueError("channel is empty")
    return value
