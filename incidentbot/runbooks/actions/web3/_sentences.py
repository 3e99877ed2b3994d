"""Small readers for ``describe``: stored outputs may have any shape (an older version's, a
masked one), so a sentence takes only the values that have the type it expects."""

from __future__ import annotations

from typing import Any

from incidentbot.runbooks.actions.base import names


def count(value: Any) -> int | None:
    """An int output (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def items(value: Any) -> list[Any]:
    """A list output, else an empty list."""
    return value if isinstance(value, list) else []


def indices(value: Any, limit: int = 8) -> str:
    """``6, 7 and 9``: validator indices (or slots) for a sentence, at most ``limit``."""
    shown = [str(i) for i in items(value) if count(i) is not None]
    more = len(shown) - limit
    if more > 0:
        return ", ".join(shown[:limit]) + f" and {more} more"
    return names(shown)


def slots(rows: Any) -> str:
    """The ``slot`` of each ``{index, slot}`` row, for a sentence."""
    return indices([r.get("slot") for r in items(rows) if isinstance(r, dict)])


def at(what: str, slot_list: str) -> str:
    """``missed at slot 390`` / ``missed at slots 390 and 395``."""
    many = "," in slot_list or " and " in slot_list
    return f"{what} at slot{'s' if many else ''} {slot_list}"


def text(value: Any, default: str = "?") -> str:
    """A short string output, else ``default``."""
    return value if isinstance(value, str) and value.strip() and "\n" not in value else default
