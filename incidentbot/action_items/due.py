"""Due dates as people type them: ``2026-12-10``, ``+3d``, ``+2w``, ``today``, ``tomorrow``.

A due date is a calendar day in the team's time zone (``settings.timezone``): relative forms
count from today there, and a date before today is refused (an item is not born overdue).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from incidentbot.clock import utcnow
from incidentbot.errors import DomainError

MAX_DAYS_AHEAD = 3660  # about ten years: further out is a typo, not a plan
FORMS = "YYYY-MM-DD, +3d, +2w, today or tomorrow"
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_RELATIVE = re.compile(r"^\+(\d{1,5})\s*([dw])$")
_WORDS = {"today": 0, "tomorrow": 1, "yesterday": -1}


def today(timezone: str, now: datetime | None = None) -> date:
    """The calendar day it is now in ``timezone``."""
    return (now or utcnow()).astimezone(ZoneInfo(timezone)).date()


def parse_due(text: str, *, timezone: str, now: datetime | None = None) -> date:
    """Read a due date; raise DomainError saying what was expected."""
    raw = str(text).strip()
    value = raw.lower().removeprefix("due:").strip()
    shown = f"due date '{value if len(value) <= 40 else value[:40] + '…'}'"
    base = today(timezone, now)
    if not value:
        raise DomainError(f"the due date is empty: use {FORMS}")
    if value in _WORDS:
        day = base + timedelta(days=_WORDS[value])
    elif match := _RELATIVE.match(value):
        days = int(match.group(1)) * (7 if match.group(2) == "w" else 1)
        if days > MAX_DAYS_AHEAD:
            raise DomainError(f"{shown} is more than ten years away")
        day = base + timedelta(days=days)
    elif match := _ISO.match(value):
        year, month, dom = (int(g) for g in match.groups())
        try:
            day = date(year, month, dom)
        except ValueError as exc:
            raise DomainError(f"{shown} is not a real date ({exc})") from None
        if (day - base).days > MAX_DAYS_AHEAD:
            raise DomainError(f"{shown} is more than ten years away")
    else:
        raise DomainError(f"{shown} is not a date: use {FORMS}")
    if day < base:
        raise DomainError(
            f"{shown} is in the past ({day.isoformat()}; today is {base.isoformat()} "
            f"in {timezone}): a due date is today or later"
        )
    return day
