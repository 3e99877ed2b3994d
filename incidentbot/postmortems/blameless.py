"""The blameless-language check of what people write in a postmortem.

Two kinds of findings, each with a suggestion:

- a configured phrase ("human error", "should have", "forgot to", …); a phrase marked
  ``person_only`` ("failed to") counts only when a person is its subject;
- a person named next to a failure: a Slack mention (``<@U123>``, ``@alice``), a known person's
  name or a word such as "the on-call", followed within a few words by a failure verb ("Bob
  broke the config") or owning a failure noun ("Bob's mistake", "a mistake by Bob").

Plain text matching, case-insensitive, on whole words: it helps a reviewer, it does not judge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from incidentbot.postmortems.config import PERSON_SUGGESTION, BlamelessPhrase, BlamelessSettings

_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"'})  # same lengths
_SENTENCE = re.compile(r"[^.!?;\n]+[.!?;]*")
_MENTION = r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>|(?<![\w@])@[A-Za-z][\w.-]*"
EXCERPT = 160
_DETERMINERS = (
    "the",
    "a",
    "an",
    "this",
    "that",
    "these",
    "those",
    "its",
    "his",
    "her",
    "their",
    "our",
    "my",
    "your",
    "some",
    "every",
)


@dataclass(frozen=True)
class Finding:
    section: str
    line: int  # 1-based, within the section's text
    phrase: str  # what was found, as written
    kind: str  # "phrase" or "person"
    excerpt: str  # the sentence it is in
    suggestion: str
    where: str = ""  # where the document quotes it, when not a section's line

    def line_text(self) -> str:
        """One line for a terminal or a chat message."""
        place = self.where or f"{self.section} line {self.line}"
        return f"{place}: “{self.phrase}”: {self.suggestion}"


def _words_pattern(words: str) -> str:
    """A phrase as a regex: whole words, any run of spaces between them."""
    body = r"\s+".join(re.escape(w) for w in words.split())
    start = r"(?<!\w)" if re.match(r"\w", words) else ""
    end = r"(?!\w)" if re.search(r"\w$", words) else ""
    return start + body + end


def _alternation(words: Iterable[str]) -> str:
    ordered = sorted({w for w in words if w}, key=lambda w: (-len(w), w))
    return "|".join(_words_pattern(w) for w in ordered)


@dataclass(frozen=True)
class _Compiled:
    phrases: tuple[tuple[BlamelessPhrase, re.Pattern[str]], ...]
    person: re.Pattern[str] | None
    subject_fail: re.Pattern[str] | None
    owner_fail: re.Pattern[str] | None
    # A word each finding needs (from its phrase, failure verb or noun), lowercased: a line
    # without any of them has no finding and is not read sentence by sentence.
    keys: frozenset[str] = frozenset()


def _compile(rules: BlamelessSettings, names: tuple[str, ...]) -> _Compiled:
    return _compile_key(rules.model_dump_json(), names)


@lru_cache(maxsize=64)
def _compile_key(key: str, names: tuple[str, ...]) -> _Compiled:
    """Compiled once per rule set and list of names (the settings are frozen)."""
    rules = BlamelessSettings.model_validate_json(key)
    flags = re.IGNORECASE
    phrases = tuple(
        (p, re.compile(_words_pattern(p.phrase.translate(_QUOTES)), flags))
        for p in rules.all_phrases()
    )
    person_alt = "|".join(
        x for x in (_MENTION, _alternation(names), _alternation(rules.person_words)) if x
    )
    person = re.compile(f"(?:{person_alt})", flags)
    # Words between the person and the failure verb ("Bob quickly broke"); a determiner means
    # the failure word describes a thing ("Dana found the misconfigured backend").
    word = rf"(?!(?:{'|'.join(_DETERMINERS)})\b)[\w'-]+"
    gap = rf"(?:\s+{word}){{0,{rules.distance}}}?"
    fail_alt = _alternation(rules.failure_words)
    noun_alt = _alternation(rules.failure_nouns)
    subject_fail = (
        re.compile(rf"(?P<who>{person_alt})(?:'s)?{gap}\s+(?P<what>{fail_alt})", flags)
        if fail_alt
        else None
    )
    owner_fail = (
        re.compile(
            rf"(?P<who>{person_alt})'s\s+(?P<what>{noun_alt})"
            rf"|(?P<what2>{noun_alt})\s+(?:made\s+)?(?:by|of)\s+(?P<who2>{person_alt})",
            flags,
        )
        if noun_alt
        else None
    )
    needed = [p.phrase for p in rules.all_phrases()]
    needed += [*rules.failure_words, *rules.failure_nouns]
    keys = frozenset(_key(words) for words in needed if _key(words))
    return _Compiled(phrases, person, subject_fail, owner_fail, keys)


_TOKEN = re.compile(r"\w+")


def _key(words: str) -> str:
    """The longest word of a phrase: a line that lacks it cannot match the phrase."""
    tokens = _TOKEN.findall(words.translate(_QUOTES).lower())
    return max(tokens, key=len) if tokens else ""


def _excerpt(sentence: str) -> str:
    text = " ".join(sentence.split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


def check_text(
    section: str, text: str, rules: BlamelessSettings, names: Iterable[str] = ()
) -> list[Finding]:
    """Every finding in one section's text, in reading order."""
    if not text or not text.strip():
        return []
    known = tuple(sorted({n.strip() for n in names if n and len(n.strip()) >= 2}))
    compiled = _compile(rules, known)
    findings: list[Finding] = []
    keys = compiled.keys
    for number, raw_line in enumerate(text.translate(_QUOTES).splitlines(), start=1):
        # A long timeline has thousands of lines and few findings: skip the lines that lack
        # every word a finding needs.
        if keys.isdisjoint(_TOKEN.findall(raw_line.lower())):
            continue
        for match in _SENTENCE.finditer(raw_line):
            findings.extend(_in_sentence(section, number, match.group(0), compiled))
    return findings


def _in_sentence(section: str, line: int, sentence: str, c: _Compiled) -> list[Finding]:
    spans: list[tuple[int, int, str, str, str]] = []  # start, end, phrase, kind, suggestion
    for rule, pattern in c.phrases:
        for m in pattern.finditer(sentence):
            if rule.person_only and not _person_before(sentence, m.start(), c):
                continue
            spans.append((m.start(), m.end(), m.group(0), "phrase", rule.suggestion))
    for pattern in (c.subject_fail, c.owner_fail):
        if pattern is None:
            continue
        for m in pattern.finditer(sentence):
            spans.append((m.start(), m.end(), m.group(0), "person", PERSON_SUGGESTION))
    # Longest first at each place; a phrase inside another of the same kind is not repeated.
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0]), s[3]))
    kept: list[tuple[int, int, str, str, str]] = []
    for span in spans:
        if any(k[3] == span[3] and k[0] <= span[0] and span[1] <= k[1] for k in kept):
            continue
        kept.append(span)
    excerpt = _excerpt(sentence)
    return [
        Finding(section, line, " ".join(p.split()), kind, excerpt, suggestion)
        for _s, _e, p, kind, suggestion in kept
    ]


def _person_before(sentence: str, at: int, c: _Compiled) -> bool:
    """A person is named in the few words just before position ``at``."""
    if c.person is None:
        return False
    before = sentence[:at]
    words = before.split()
    window = " ".join(words[-4:])
    return bool(c.person.search(window))


def check_sections(
    sections: dict[str, str], rules: BlamelessSettings, names: Iterable[str] = ()
) -> list[Finding]:
    """Findings of every section, in the order the sections are given."""
    known = list(names)
    out: list[Finding] = []
    for key, text in sections.items():
        out.extend(check_text(key, text, rules, known))
    return out
