"""Small pieces of chat text shared by every Slack renderer: mentions, times in a team's time
zone, and escaping what people typed or alerts sent.

The rule (see docs/slack.md): text crosses the core as typed; whatever puts it into Slack mrkdwn
passes it through :func:`mrkdwn`, so a typed ``<!channel>``, ``<@U…>``, ``<#C…>`` or
``<https://…|…>`` is shown as those characters and never notifies or links. The only live markup
is what the bot builds itself: :func:`mention` for a person (the one Slack rendering of a
person; text outputs use :func:`incidentbot.people.render.name`), channel links, date tokens,
links to URLs from configuration. Core messages name people by their stored identity and list
them (a timeline entry's data, a refusal's ``people``); :func:`mrkdwn_people` turns those into
mentions here, at output time."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from incidentbot.people.directory import Directory, is_slack_id, plain_id
from incidentbot.people.render import event_people, swap


def mention(actor: str | None, directory: Directory | None = None) -> str:
    """A person in Slack: a mention when Slack knows them (their stored id, or the Slack id the
    directory has for a CLI user), else their name (or the stored identity) escaped."""
    if not plain_id(actor):
        return "nobody"
    slack_id = directory.slack_id(actor) if directory is not None else None
    if slack_id is None and is_slack_id(actor):
        slack_id = plain_id(actor)
    if slack_id is not None:
        return f"<@{slack_id}>"
    return mrkdwn(directory.name(actor) if directory is not None else plain_id(actor))


def mrkdwn_people(
    text: Any, people: Iterable[str | None], directory: Directory | None = None
) -> str:
    """Core text (a timeline summary, a refusal) escaped, with the people it names by their
    stored identity (``people``) shown as mentions. Anything else stays text, including a
    mention someone typed."""
    return swap(mrkdwn(text), [p for p in people if p], lambda p: mention(p, directory))


def mrkdwn_refusal(
    text: Any,
    people: Iterable[str | None],
    groups: Iterable[str] = (),
    directory: Directory | None = None,
) -> str:
    """A refusal from the core for Slack: :func:`mrkdwn_people`, and the configured user
    groups it names (``<!subteam^S…>``, from settings) kept live; a group typed stays text."""
    keep = {f"<!subteam^{g}>" for g in groups}
    return mrkdwn_keeping(mrkdwn_people(text, people, directory), keep, escaped=True)


def event_mrkdwn(summary: str, data: Any, directory: Directory | None = None) -> str:
    """A timeline entry for Slack: :func:`mrkdwn_people` with the people of its data."""
    people = event_people(data if isinstance(data, dict) else {})
    return mrkdwn_people(summary, people, directory)


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


def mrkdwn_keeping(text: Any, keep: Iterable[str], *, escaped: bool = False) -> str:
    """``text`` escaped, except the markup tokens in ``keep`` (``<@U123>``, ``<!subteam^S1>``):
    for text the bot put together from what it knows (stored user ids, configured groups) and
    what someone typed, such as a refusal naming a configured group. Any other mention, a
    labelled one, a channel link or a link stays text. ``escaped``: ``text`` is mrkdwn already."""
    out = str(text) if escaped else mrkdwn(text)
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
