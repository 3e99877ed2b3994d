"""What people type about an action item, checked and cleaned before it is stored: its id
(``12`` or ``#12``), priority, status, text and owner. Text is one line with secrets masked by
the timeline's rules; a refusal is a :class:`~incidentbot.errors.DomainError` that says what to
type instead.
"""

from __future__ import annotations

import re

from incidentbot.action_items.report import OPEN
from incidentbot.errors import DomainError
from incidentbot.ledger.redact import redact_text

PRIORITIES = ("low", "medium", "high", "urgent")
DEFAULT_PRIORITY = "medium"  # the column's default: an item nobody ranked
DONE, WONT_DO = "done", "wont_do"
STATUSES = (OPEN, DONE, WONT_DO)
MAX_TEXT = 2000
MAX_REASON = 1000
MAX_OWNER = 128
_ID = re.compile(r"^\s*#?(\d{1,12})\s*$")


def label(status: str) -> str:
    """How a status reads to people: ``wont_do`` is "won't do"."""
    return "won't do" if status == WONT_DO else status


def parse_id(text: str | int) -> int:
    """``12`` and ``#12`` both name action item 12."""
    match = _ID.match(str(text))
    if not match:
        shown = str(text) if len(str(text)) <= 40 else str(text)[:40] + "…"
        raise DomainError(f"'{shown}' is not an action item id: use its number, e.g. 12")
    return int(match.group(1))


def parse_priority(text: str) -> str:
    value = str(text).strip().lower().removeprefix("priority:")
    if value not in PRIORITIES:
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise DomainError(f"unknown priority '{shown}': use {', '.join(PRIORITIES)}")
    return value


def parse_status(text: str) -> str:
    value = str(text).strip().lower().replace("'", "").replace("-", "_").replace(" ", "_")
    value = {"wontdo": WONT_DO}.get(value, value)
    if value not in STATUSES:
        raise DomainError(f"unknown status '{text}': use open, done or wont_do")
    return value


def clean_text(text: str, what: str, limit: int) -> str:
    """One line of what people typed, secrets masked (with the timeline's rules) before it
    is stored, shown or exported."""
    clean = redact_text(" ".join(str(text).split()))
    if not clean:
        raise DomainError(f"{what} is empty")
    if len(clean) > limit:
        raise DomainError(f"{what} is {len(clean)} characters long: at most {limit}")
    return clean


def clean_owner(owner: str | None) -> str | None:
    if owner is None:
        return None
    return clean_text(owner, "the owner", MAX_OWNER)
