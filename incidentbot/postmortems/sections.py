"""The sections of a postmortem people write: the built-in ones (summary, impact, trigger, …,
contributing factors) and the ones a team adds with ``postmortems.extra_sections``.

Imported by :mod:`incidentbot.postmortems.config` (to check a team's sections against the
built-in ones): it imports nothing of incidentbot but its errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from incidentbot.errors import DomainError


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    prompt: str


BUILT_IN = (
    Section(
        "summary",
        "Summary",
        "In a few sentences for someone who was not there: what broke, who and what it "
        "affected, for how long, and how it was fixed.",
    ),
    Section(
        "impact",
        "Impact",
        "Who and what was affected, in numbers where you have them: requests failed, users or "
        "validators affected, how long service was degraded, blocks behind, missed slots.",
    ),
    Section(
        "trigger",
        "Trigger",
        "The change or event that set it off (a deploy, a config push, a chain upgrade, load, a "
        "provider outage).",
    ),
    Section(
        "detection",
        "Detection",
        "How we found out: which alert fired or who reported it, and how that could be sooner.",
    ),
    Section(
        "resolution",
        "Resolution",
        "What stopped the impact and what brought service back, in the order it happened.",
    ),
    Section(
        "what_went_well",
        "What went well",
        "What helped: alerts that fired, tools and runbooks that worked, people who showed up, "
        "decisions that paid off.",
    ),
    Section(
        "what_went_wrong",
        "What went wrong",
        "What made the incident worse or longer: signals missed or late, tools that got in the "
        "way, steps that did not work. Describe systems and conditions, not people.",
    ),
    Section(
        "where_we_got_lucky",
        "Where we got lucky",
        "What went right by chance and will not next time: the quiet hour, the person who "
        "happened to be online, the backup that happened to be in sync.",
    ),
    Section(
        "contributing_factors",
        "Contributing factors",
        "The conditions that together made this possible (there is rarely one root cause): "
        "changes, defaults, load, gaps in monitoring, missing guards.",
    ),
)
BUILT_IN_KEYS = tuple(s.key for s in BUILT_IN)
ALIASES = {
    "overview": "summary",
    "impacts": "impact",
    "cause": "trigger",
    "detect": "detection",
    "detected": "detection",
    "resolve": "resolution",
    "resolved": "resolution",
    "well": "what_went_well",
    "went_well": "what_went_well",
    "wrong": "what_went_wrong",
    "went_wrong": "what_went_wrong",
    "lucky": "where_we_got_lucky",
    "luck": "where_we_got_lucky",
    "factors": "contributing_factors",
    "contributing": "contributing_factors",
}


class SectionLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def prompt(self) -> str: ...


KEY_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
TAKEN = frozenset(BUILT_IN_KEYS) | frozenset(ALIASES)


def normalise(text: str) -> str:
    return "_".join(str(text).strip().lower().replace("-", " ").split())


def all_sections(extra: Iterable[SectionLike] = ()) -> tuple[Section, ...]:
    """The built-in sections, then ``extra`` (a team's, in the order they are configured)."""
    return BUILT_IN + tuple(
        Section(e.key, e.title, e.prompt or f"What your team records as {e.title.lower()}.")
        for e in extra
    )


def section_key(text: str, extra: Iterable[SectionLike] = ()) -> str:
    """The key a section is named by (``well`` is ``what_went_well``); an unknown name is
    refused with the list of known ones."""
    raw = normalise(text)
    key = ALIASES.get(raw, raw)
    keys = [s.key for s in all_sections(extra)]
    if key not in keys:
        shown = str(text).strip()[:60]
        raise DomainError(f"unknown section {shown!r}: allowed are {', '.join(keys)}")
    return key
