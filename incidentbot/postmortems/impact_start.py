"""When the impact started, as someone answers it at the resolve: ``20m ago``, a time of day in
the team's time zone (``14:05``, ``yesterday 23:50``), a date and time (ISO 8601; without an
offset, in the team's time zone), or the same
time as another milestone (``same as detected``, ``declared``).

A time of day is today's in the team's time zone, or yesterday's when today's is still to
come (an impact that started before midnight and was resolved after it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from incidentbot.durations import parse_when
from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident
from incidentbot.postmortems.metrics import EventLike, sourced

FORMS = "use 20m ago, 14:05, yesterday 23:50, 2026-11-22 05:10 or “same as detected”"
_CLOCK = re.compile(r"^(?:(yesterday|today)\s+)?(\d{1,2})[:h.](\d{2})(?::(\d{2}))?$")
_SAME = re.compile(r"^(?:(?:the\s+)?same\s+(?:time\s+)?as\s+|as\s+|when\s+)?(?:it\s+was\s+)?(\w+)$")
SAME_AS = {"detected": "detected", "detection": "detected", "declared": "declared",
           "declare": "declared", "declaration": "declared"}  # fmt: skip


def reference_times(
    incident: Incident, events: Iterable[EventLike], alert_actor: str
) -> dict[str, datetime | None]:
    """The times “same as …” means: detected (or its default: the first alert, else the
    declare) and declared."""
    at = sourced(incident, events, alert_actor).at
    return {"detected": at["detected"], "declared": at["declared"]}


def parse(text: str, *, references: dict[str, datetime | None], timezone: str,
          now: datetime) -> datetime:  # fmt: skip
    """The point in time ``text`` names (UTC), or a DomainError saying what to type; a time
    still to come is refused (the impact cannot have started later than now)."""
    when = _parse(text, references=references, timezone=timezone, now=now)
    if when > now:
        raise DomainError(
            f"{text.strip()[:40]!r} is in the future: the impact started now or earlier"
        )
    return when


def _parse(text: str, *, references: dict[str, datetime | None], timezone: str,
           now: datetime) -> datetime:  # fmt: skip
    raw = " ".join(str(text).split()).lower().rstrip(".")
    if not raw:
        raise DomainError(f"say when the impact started: {FORMS}")
    same = _SAME.match(raw)
    if same and same.group(1) in SAME_AS:
        name = SAME_AS[same.group(1)]
        when = references.get(name)
        if when is None:
            raise DomainError(f"{name} is not recorded on this incident: {FORMS}")
        return when
    clock = _CLOCK.match(raw)
    if clock:
        day_word, hh, mm, ss = clock.groups()
        hour, minute, second = int(hh), int(mm), int(ss or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise DomainError(f"{text.strip()[:40]!r} is not a time of day: {FORMS}")
        tz = ZoneInfo(timezone)
        day = now.astimezone(tz).date()
        if day_word == "yesterday":
            day -= timedelta(days=1)
        local = datetime.combine(day, time(hour, minute, second), tz)
        if local > now and day_word is None:
            local -= timedelta(days=1)  # not yet today: it was yesterday's
        return local.astimezone(now.tzinfo)
    if raw == "now" or raw.endswith(" ago"):
        try:
            return parse_when(raw, now)
        except ValueError:
            raise DomainError(f"{text.strip()[:40]!r} is not a time: {FORMS}") from None
    try:
        value = datetime.fromisoformat(raw.upper().replace("Z", "+00:00"))
    except ValueError:
        raise DomainError(f"{text.strip()[:40]!r} is not a time: {FORMS}") from None
    if value.tzinfo is None:  # as a clock on the team's wall shows it
        value = value.replace(tzinfo=ZoneInfo(timezone))
    return value.astimezone(now.tzinfo)
