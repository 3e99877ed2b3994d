"""Human durations (``30m``, ``1h30m``, ``2d``) and points in time (``45m ago``, ISO 8601).

People type these into Slack and the CLI at 3 a.m.; the parser accepts the obvious spellings
and says exactly what it expected when it cannot read one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)\s*([smhdw])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[smhdw]\s*)+$")


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Read ``90s``, ``30m``, ``1h30m``, ``2d`` or a number of seconds."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}: use a number with a unit, e.g. 30m, 1h, 2d")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"invalid duration {text!r}: must not be negative")
        return timedelta(seconds=text)
    raw = str(text).strip().lower()
    if raw.isdigit():
        return timedelta(seconds=int(raw))
    if not _WHOLE.match(raw):
        raise ValueError(f"invalid duration {text!r}: use a number with a unit, e.g. 30m, 1h, 2d")
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(raw))
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta | None) -> str:
    """``1h 05m`` style, for tables and postmortems; ``unknown`` for None."""
    if delta is None:
        return "unknown"
    total = int(delta.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours:02d}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m {seconds:02d}s"
    return f"{sign}{seconds}s"


def format_span(delta: timedelta) -> str:
    """``31m``, ``1h``, ``1h 05m``, ``2d 3h`` style, for sentences (whole minutes, down)."""
    minutes = max(int(delta.total_seconds()) // 60, 0)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes:02d}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def ensure_utc(value: datetime) -> datetime:
    """Convert an aware datetime to UTC; refuse a naive one (its zone would be a guess)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def parse_when(text: str, now: datetime) -> datetime:
    """Read a point in time: ``now``, ``45m ago``, or ISO 8601 (no offset means UTC)."""
    raw = text.strip()
    lowered = raw.lower()
    if lowered == "now":
        return now
    if lowered.endswith(" ago"):
        return now - parse_duration(lowered[: -len(" ago")])
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: use ISO 8601 (2026-11-22T05:10Z), 'now' or '45m ago'"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
