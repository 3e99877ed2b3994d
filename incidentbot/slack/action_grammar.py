"""The words after ``/incident action``: add, list, edit, done, assign, wontdo, reopen, export.

``parse_action`` returns the arguments of one operation or raises :class:`ActionUsage` (what
was wrong and the usage of that operation); :mod:`incidentbot.slack.grammar` turns either into
its ``Command`` or ``Usage``. Whether a user mentioned exists is for the handler to ask Slack:
here a mention is only checked for its shape.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from incidentbot.action_items import fields as item_fields
from incidentbot.action_items.due import parse_due
from incidentbot.errors import DomainError

_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_BARE_AT = re.compile(r"^@[\w.-]+$")
_OPTION = re.compile(r"^(due|priority):(.*)$", re.IGNORECASE)

USAGES = {
    "add": "/incident action add <text> [@owner] [due:YYYY-MM-DD|+3d] "
    "[priority:low|medium|high|urgent]",
    "list": "/incident action list [mine]",
    "edit": "/incident action edit <id> due <YYYY-MM-DD|+3d|none> | priority <p> | text <text>",
    "done": "/incident action done <id>",
    "assign": "/incident action assign <id> @owner",
    "wontdo": "/incident action wontdo <id> <reason>",
    "reopen": "/incident action reopen <id>",
    "export": "/incident action export <id>",
}
HELP = {
    "add": "add an action item (a mention makes its owner)",
    "list": "this incident's action items (elsewhere, or with `mine`: your open ones)",
    "edit": "change an open item's due date, priority or text",
    "done": "mark an item done",
    "assign": "give an item an owner",
    "wontdo": "close an item that will not be done, saying why",
    "reopen": "reopen a done or won't-do item",
    "export": "open the item as a GitHub issue",
}
USAGE = "/incident action add|list|done|edit|assign|wontdo|reopen|export …"
ALIASES = {
    "new": "add",
    "ls": "list",
    "complete": "done",
    "wont-do": "wontdo",
    "wont_do": "wontdo",
    "won't": "wontdo",
    "owner": "assign",
    "change": "edit",
    "set": "edit",
}
# Work on one incident's items, so they run in its channel; `list` works anywhere.
CHANNEL_ONLY = ("add", "edit", "done", "assign", "wontdo", "reopen", "export")
MAX_TEXT = item_fields.MAX_TEXT


class ActionUsage(DomainError):
    def __init__(self, message: str, usage: str):
        super().__init__(message)
        self.usage = usage


def parse_action(rest: str, *, timezone: str, now: datetime | None = None) -> dict[str, Any]:
    """``{"op": ..., ...}`` for the text after ``action`` (already normalised)."""
    head, _, tail = rest.partition(" ")
    if not head or head.lower() == "help":
        return {"op": "help"}
    op = ALIASES.get(head.lower(), head.lower())
    if op not in USAGES:
        shown = head if len(head) <= 40 else head[:40] + "…"
        raise ActionUsage(f"Unknown action subcommand `{shown}`.", USAGE)
    usage = USAGES[op]
    tail = tail.strip()
    try:
        if op == "add":
            return _add(tail, timezone, now)
        if op == "list":
            if tail.lower() not in ("", "mine"):
                raise DomainError(f"`action list` takes only `mine`, not '{tail[:40]}'")
            return {"op": "list", "mine": tail.lower() == "mine"}
        if op == "edit":
            return _edit(tail, timezone, now)
        return _with_id(op, tail)
    except ActionUsage:
        raise
    except DomainError as exc:
        message = str(exc)
        message = message[:1].upper() + message[1:]
        raise ActionUsage(message if message.endswith(".") else message + ".", usage) from None


def _strip_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def _add(rest: str, timezone: str, now: datetime | None) -> dict[str, Any]:
    owners = _MENTION.findall(rest)
    if len(owners) > 1:
        raise DomainError("mention at most one owner: an action item has one")
    words = _MENTION.sub(" ", rest).split()
    options: dict[str, str] = {}
    text: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        match = _OPTION.match(word)
        if match:
            key, value = match.group(1).lower(), match.group(2)
            if not value and i + 1 < len(words):  # "due: +3d"
                i += 1
                value = words[i]
            if key in options:
                raise DomainError(f"`{key}:` is given twice")
            options[key] = value
        elif _BARE_AT.match(word):
            raise DomainError(
                f"'{word[:40]}' is not a Slack mention: pick the person from Slack's list "
                "so that their user id is sent"
            )
        else:
            text.append(word)
        i += 1
    body = _strip_quotes(" ".join(text).strip())
    if not body:
        raise DomainError("`action add` needs the text of the item")
    if len(body) > MAX_TEXT:
        raise DomainError(f"the text is {len(body)} characters long: at most {MAX_TEXT}")
    due = None
    if "due" in options:
        due = parse_due(options["due"], timezone=timezone, now=now)
    priority = None
    if "priority" in options:
        priority = item_fields.parse_priority(options["priority"])
    return {
        "op": "add",
        "text": body,
        "owner": owners[0] if owners else None,
        "due": due,
        "priority": priority,
    }


_NO_DATE = ("none", "clear", "-", "never")


def _edit(rest: str, timezone: str, now: datetime | None) -> dict[str, Any]:
    """``<id> due <date>``, ``<id> priority <p>``, ``<id> text <text>`` (or ``due:<date>``)."""
    first, _, more = rest.partition(" ")
    if not first:
        raise DomainError("`action edit` needs an item id, like `action edit 3 due +3d`")
    item_id = item_fields.parse_id(first)
    more = more.strip()
    word, _sep, value = more.partition(":") if re.match(r"^\w+:", more) else more.partition(" ")
    field = word.lower()
    value = _strip_quotes(value.strip())
    if field not in ("due", "priority", "text"):
        shown = f" '{word[:40]}'" if word else ""
        raise DomainError(f"say what to change{shown}: due, priority or text")
    if not value:
        raise DomainError(f"`action edit {item_id} {field}` needs the new {field}")
    new: Any
    if field == "due":
        new = None if value.lower() in _NO_DATE else parse_due(value, timezone=timezone, now=now)
    elif field == "priority":
        new = item_fields.parse_priority(value)
    else:
        if _MENTION.search(value):
            raise DomainError("the text cannot mention anyone: the owner is set with `assign`")
        if len(value) > MAX_TEXT:
            raise DomainError(f"the text is {len(value)} characters long: at most {MAX_TEXT}")
        new = value
    return {"op": "edit", "id": item_id, "field": field, "value": new}


def _with_id(op: str, rest: str) -> dict[str, Any]:
    first, _, more = rest.partition(" ")
    if not first:
        raise DomainError(f"`action {op}` needs an item id, like `action {op} 3`")
    item_id = item_fields.parse_id(first)
    more = more.strip()
    if op == "assign":
        owners = _MENTION.findall(more)
        leftover = _MENTION.sub(" ", more).strip()
        if not owners:
            if leftover and _BARE_AT.match(leftover.split()[0]):
                raise DomainError(
                    f"'{leftover.split()[0][:40]}' is not a Slack mention: pick the person "
                    "from Slack's list so that their user id is sent"
                )
            raise DomainError("mention the new owner, like @alice")
        if len(owners) > 1 or leftover:
            raise DomainError("mention exactly one owner and nothing else")
        return {"op": op, "id": item_id, "owner": owners[0]}
    if op == "wontdo":
        reason = _strip_quotes(more)
        if not reason:
            raise DomainError("`action wontdo` needs a reason: why it will not be done")
        if len(reason) > item_fields.MAX_REASON:
            raise DomainError(
                f"the reason is {len(reason)} characters: at most {item_fields.MAX_REASON}"
            )
        return {"op": op, "id": item_id, "reason": reason}
    if more:
        raise DomainError(f"`action {op}` takes only the item id")
    return {"op": op, "id": item_id}
