"""Text as people and systems type it, made safe to store: invisible controls removed.

What people type is stored as typed, with one exception made where text enters the bot:
characters that show nothing but change what text means or does are removed. C0 and C1
control characters (NUL among them, which PostgreSQL refuses to store) except tab and newline,
the bidirectional overrides and isolates that make ``txt.exe`` read as ``exe.txt``, and
zero-width characters that hide words from a search or make two names look the same. Escaping
for a medium (Slack mrkdwn, HTML, Markdown) is the adapters' business, not done here.
"""

from __future__ import annotations

import re
from typing import Any

_INVISIBLE = re.compile(
    "["
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # C0 (not tab, newline, carriage return), DEL, C1
    "\u200b-\u200f"  # zero-width space/joiners, left-to-right and right-to-left marks
    "\u202a-\u202e"  # bidirectional embeddings and overrides
    "\u2060-\u2064\u2066-\u2069"  # word joiner, invisible operators, bidirectional isolates
    "\ufeff"  # zero-width no-break space (byte order mark)
    "]"
)


def clean(text: str) -> str:
    """``text`` without invisible control characters (carriage returns become newlines)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _INVISIBLE.sub("", text)


def clean_tree(value: Any) -> Any:
    """Every string in a parsed request (dicts, lists) cleaned; other values as they are."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean_tree(k): clean_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_tree(v) for v in value]
    return value
