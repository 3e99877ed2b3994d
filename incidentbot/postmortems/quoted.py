"""The blameless-language check of every human text a postmortem quotes.

What people wrote in the sections, the declare's description and the resolve's summary, the
notes, pinned messages and status updates the timeline shows, and action items. Each finding
outside the sections says where it is (``where``), so a reviewer can find the passage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from incidentbot.postmortems import blameless
from incidentbot.postmortems.config import BlamelessSettings
from incidentbot.postmortems.contents import Entry, SectionDoc


def findings(
    rules: BlamelessSettings,
    names: list[str],
    sections: Sequence[SectionDoc],
    texts: Sequence[tuple[str, str]],
    entries: Sequence[Entry],
    items: Sequence[tuple[str, str]],
    plain: Callable[[str], str],
) -> list[blameless.Finding]:
    """Findings in the written sections (in their order), then the other texts, the timeline
    entries people wrote (``entries``, as shown) and the action items. ``plain`` writes a
    phrase or excerpt as the document shows it (names, not ids)."""
    out: list[blameless.Finding] = []

    def keep(found: blameless.Finding, where: str) -> None:
        out.append(
            blameless.Finding(
                found.section,
                found.line,
                plain(found.phrase),
                found.kind,
                plain(found.excerpt),
                found.suggestion,
                where,
            )
        )

    for s in sections:
        for f in blameless.check_text(s.key, s.text, rules, names):
            keep(f, "")  # a section's finding is placed by its section and line
    for where, text in (*texts, *items):
        for f in blameless.check_text("quoted", text, rules, names):
            keep(f, where)
    if entries:
        # One text, one line per entry: the rules are compiled and the names sorted once.
        joined = "\n".join(" ".join(e.text.split()) for e in entries)
        for f in blameless.check_text("timeline", joined, rules, names):
            e = entries[f.line - 1]
            keep(f, f"Timeline, {e.label.lower()} by {e.actor} at {e.at}")
    return out
