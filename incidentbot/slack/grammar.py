"""The ``/incident`` grammar: one slash command, many subcommands.

``parse`` turns the text Slack sends into a :class:`Command` or a :class:`Usage` (what was wrong
and the right usage). It never raises: arbitrary text gives one of the two. Slack escapes
mentions as ``<@U123|name>``, channels as ``<#C123|name>`` and links as ``<https://..|label>``;
smart quotes, emoji and runs of spaces are normal in what people type.

The subcommands, their aliases, usage, help and where they may be used come from the one table
in :mod:`incidentbot.slack.command_table`; the argument parsers are in
:mod:`incidentbot.slack.command_parsers`.
"""

from __future__ import annotations

from collections.abc import Callable

from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.slack.command_parsers import Command, Usage, mention_user
from incidentbot.slack.command_table import ALIASES, SUBCOMMANDS, help_text

__all__ = ["Command", "Usage", "help_text", "mention_user", "normalize", "parse"]

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})


def normalize(text: str) -> str:
    """Fold smart quotes, non-breaking and repeated spaces; keep everything else as typed."""
    text = (text or "").translate(_QUOTES).replace("\u00a0", " ")
    return " ".join(text.split())


def parse(
    text: str, *, settings: Settings, in_incident_channel: bool | Callable[[], bool]
) -> Command | Usage:
    """Parse the text after ``/incident``.

    A bare ``/incident`` shows the help in an incident's channel, where people come to act on
    that incident, and opens the declare form anywhere else. ``in_incident_channel`` may be a
    function: it is then called only when the answer matters (a bare command, a subcommand
    that works only in an incident's channel), so a declare does not wait on a read.
    """
    clean = normalize(text)

    def in_channel() -> bool:
        return in_incident_channel() if callable(in_incident_channel) else in_incident_channel

    if not clean:
        if in_channel():
            return Command("help")
        return Command(
            "declare", {"severity": None, "title": None, "service": None, "private": False}
        )
    head, _, rest = clean.partition(" ")
    name = head.lower()
    name = ALIASES.get(name, name)
    rest = rest.strip()
    sub = SUBCOMMANDS.get(name)
    if sub is None:
        shown = head if len(head) <= 40 else head[:40] + "…"
        return Usage(
            f"Unknown subcommand `{shown}`.",
            "/incident <subcommand>; try `/incident help` for the list",
        )
    if sub.channel_only and not in_channel():
        return Usage(
            f"`/incident {name}` only works in an incident's channel.",
            sub.usage + " (run it in the incident's channel)",
        )
    try:
        return sub.parser(name, rest, settings, sub.usage)
    except DomainError as exc:
        return Usage(str(exc)[:1].upper() + str(exc)[1:] + ".", sub.usage)
