"""Incident channel names from the configured pattern, within Slack's rules.

Slack accepts lower case letters, digits, ``-`` and ``_``, at most 80 characters. The title is
folded to ASCII and shortened at a word boundary so that the whole name fits.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

MAX_CHANNEL_NAME = 80


# Letters NFKD does not decompose into ASCII.
_FOLD = str.maketrans({"œ": "oe", "æ": "ae", "ß": "ss", "ø": "o", "ł": "l", "đ": "d", "þ": "th"})


def slugify(text: str) -> str:
    folded = (
        unicodedata.normalize("NFKD", text.lower().translate(_FOLD))
        .encode("ascii", "ignore")
        .decode("ascii")
    )
    return re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")


def channel_name(
    pattern: str,
    *,
    number: int,
    title: str,
    severity: str,
    declared_at: datetime,
    suffix: str = "",
) -> str:
    """Render ``pattern`` (``inc-{number}-{slug}``); ``suffix`` (``-2``) resolves a collision."""
    values = {
        "number": str(number),
        "severity": severity.lower(),
        "date": declared_at.strftime("%Y%m%d"),
    }
    without_slug = pattern.format(slug="", **values)
    room = MAX_CHANNEL_NAME - len(without_slug) - len(suffix)
    slug = slugify(title)
    if len(slug) > room:
        cut = slug[: max(room, 0)]
        # Shorten at a word boundary when one is near enough, never leave a dangling '-'.
        if "-" in cut and len(slug) > len(cut) and slug[len(cut)] != "-":
            cut = cut.rsplit("-", 1)[0]
        slug = cut.strip("-")
    name = pattern.format(slug=slug, **values)
    name = re.sub(r"-{2,}", "-", name).strip("-_") + suffix
    return name[:MAX_CHANNEL_NAME]
