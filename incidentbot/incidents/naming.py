"""Incident channel names from the configured pattern, within Slack's rules, and the purpose
that marks a channel as an incident's own.

Slack accepts lower case letters, digits, ``-`` and ``_``, at most 80 characters. The title is
folded to ASCII and shortened at a word boundary so that the whole name fits.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any

from incidentbot.chat_text import mrkdwn_clipped

MAX_CHANNEL_NAME = 80
MAX_PURPOSE = 250  # Slack's limit on a channel purpose


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


def marker(incident: Any) -> str:
    """Put in the channel purpose: proves a channel belongs to this incident."""
    return f"[{incident.ref}]"


def owner_tag(installation: str) -> str:
    """Ends the channel purpose: another installation in the same workspace has an INC-1 too,
    and must never adopt this one's channel."""
    return f"· incidentbot {installation}"


def purpose_of(incident: Any, installation: str) -> str:
    tag = owner_tag(installation)
    # Slack reads a purpose for mentions: the title is shown as typed, never as markup.
    head = mrkdwn_clipped(f"{marker(incident)} {incident.title}", MAX_PURPOSE - len(tag) - 1)
    return f"{head} {tag}"


def is_owned(purpose: str, incident: Any, installation: str) -> bool:
    return purpose.startswith(marker(incident)) and purpose.endswith(owner_tag(installation))
