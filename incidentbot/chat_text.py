"""Small pieces of chat text shared by every Slack renderer: mentions, times in a team's time
zone, and escaping what people typed or alerts sent.

The rule (see docs/slack.md): text crosses the core as typed; whatever puts it into Slack mrkdwn
passes it through :func:`mrkdwn`, so a typed ``<!channel>``, ``<@U…>``, ``<#C…>`` or
``<https://…|…>`` is shown as those characters and never notifies or links. The only live markup
is what the bot builds itself: :func:`who` for a stored Slack user id, channel links, date
tokens, links to URLs from configuration."""

from __future__ import annotations

import re
from collections.abc import Iterable
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
    return f"<@{plain_id(user)}>" if is_slack_id(user) else mrkdwn(user)


def when(moment: datetime, timezone: str | ZoneInfo) -> str:
    tz = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
    return moment.astimezone(tz).strftime("%a %d %b %H:%M %Z")


def mrkdwn(text: Any) -> str:
    """Slack's escaping of the three control characters, for text people typed or alerts sent:
    ``<!here>`` becomes ``&lt;!here&gt;``, which Slack shows as the characters typed."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_clipped(text: Any, limit: int) -> str:
    """``text`` escaped and cut to ``limit`` characters, never in the middle of an entity."""
    out = mrkdwn(text)
    if len(out) <= limit:
        return out
    return re.sub(r"&[a-z]{0,3}$", "", out[:limit])


def mention_tokens(people: Iterable[str | None]) -> set[str]:
    """The plain mentions (``<@U123>``) of those of ``people`` who are Slack user ids."""
    return {f"<@{plain_id(p)}>" for p in people if is_slack_id(p)}


def mrkdwn_keeping(text: Any, keep: Iterable[str]) -> str:
    """``text`` escaped, except the markup tokens in ``keep`` (``<@U123>``, ``<!subteam^S1>``):
    for text the bot put together from what it knows (stored user ids, configured groups) and
    what someone typed, such as the timeline entry "Invited <@U123>" or a refusal naming who may
    approve. Any other mention, a labelled one, a channel link or a link stays text."""
    out = mrkdwn(text)
    for token in sorted(set(keep), key=len, reverse=True):
        out = out.replace(mrkdwn(token), token)
    return out


def channel_name(value: str) -> str:
    """A channel as configured (``#oncall`` or ``oncall``), without the ``#``; ValueError if
    empty."""
    value = value.strip().removeprefix("#")
    if not value:
        raise ValueError("channel is empty")
    return value
