"""People in text that people read, for every medium except Slack (the Slack adapter renders
mentions from the same data: :mod:`incidentbot.slack.mentions`).

Core messages carry no markup. A timeline entry the core writes names people by their stored
identity (``U0N581U33XT is commander``, ``Invited U0N581U33XT``) and lists them in its data
(``people``, or the ``user``/``users``/``previous`` of role and invitation entries); each
output swaps those identities for what its reader should see. :func:`name` is the one text
rendering of a person; :func:`event_text` applies it to an entry.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from typing import Any

from incidentbot.people.directory import Directory, is_slack_id, plain_id

# Keys of an event's data that hold people the summary names.
PEOPLE_KEYS = ("people", "users", "user", "previous", "owner")
# A raw Slack mention, as old rows and what people typed in Slack carry it.
MENTION = re.compile(r"<@([UW][A-Z0-9]{2,})(?:\|[^<>]*)?>")
# A bare Slack user id in text (``cancelled by U024BE7LH`` in a run's error).
BARE_ID = re.compile(r"(?<![\w@<])[UW][A-Z0-9]{8,}(?!\w)")


def name(directory: Directory, actor: str | None) -> str:
    """A person for text: their name, or the stored identity when nobody knows it."""
    return directory.name(actor)


def event_people(data: Mapping[str, Any] | None) -> list[str]:
    """The people an entry's summary names, from its data."""
    out: list[str] = []
    for key in PEOPLE_KEYS:
        value = (data or {}).get(key)
        values = value if isinstance(value, list) else [value]
        out += [v for v in values if isinstance(v, str) and v.strip()]
    return list(dict.fromkeys(out))


def swap(text: str, people: list[str], render: Callable[[str], str]) -> str:
    """``text`` with each whole-word occurrence of a person in ``people`` rendered."""
    plain = {plain_id(p) for p in people if plain_id(p)}
    if not plain:
        return text
    alternatives = "|".join(re.escape(p) for p in sorted(plain, key=len, reverse=True))
    # Whole words only: not inside a host name, a path or a hyphenated name (restart-alice-1).
    pattern = re.compile(r"(?<![\w@:./-])(?:slack:)?(" + alternatives + r")(?![\w-]|\.\w)")
    return pattern.sub(lambda m: render(m.group(1)), text)


def ids_in(text: str) -> list[str]:
    """The Slack user ids in text, bare or in mentions (to load the directory for them)."""
    return [*BARE_ID.findall(text), *MENTION.findall(text)]


def event_text(summary: str, data: Mapping[str, Any] | None, directory: Directory) -> str:
    """An entry's summary as text: the people it names by name; a Slack mention someone typed
    (``<@U…>``) as ``@Name``; a bare Slack id of someone the directory knows (a run's
    "cancelled by U…") by name too."""
    out = swap(summary, event_people(data), directory.name)
    if "<@" in out:
        out = MENTION.sub(lambda m: "@" + directory.name(m.group(1)), out)
    known = [i for i in BARE_ID.findall(out) if directory.find(i) is not None]
    return swap(out, known, directory.name) if known else out


def plain_text(text: str, directory: Directory, ids: re.Pattern[str] | None = None) -> str:
    """Slack's markup as people read it: mentions as ``@Name``, channels as ``#name``, links
    as ``label (url)``; ``&lt;`` and friends unescaped. Bare user ids matched by ``ids``
    become names."""

    def angle(m: re.Match[str]) -> str:
        inner = m.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@") and is_slack_id(target[1:]):
            return "@" + directory.name(target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!subteam^"):
            return label if label.startswith("@") else "@" + (label or target[9:])
        if target.startswith("!"):
            return "@" + target[1:]
        if re.match(r"^(https?|mailto):", target):
            return f"{label} ({target})" if label and label != target else target
        return m.group(0)

    out = _ANGLE.sub(angle, text) if "<" in text else text
    if ids is not None and ("U" in out or "W" in out):  # Slack user ids start with U or W
        out = ids.sub(lambda m: directory.name(m.group(0)), out)
    return html.unescape(out) if "&" in out else out


_ANGLE = re.compile(r"<([^<>]+)>")
