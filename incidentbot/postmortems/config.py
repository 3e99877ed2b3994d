"""The ``postmortems`` section of the settings: templates, where documents are published, when
they are due, and the words the blameless-language check looks for.

Imported by :mod:`incidentbot.config`; must not import it back.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentbot.postmortems import sections
from incidentbot.template_files import TEMPLATES

PACKAGE_TEMPLATES = TEMPLATES  # the shipped templates (incidentbot.template_files)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlamelessPhrase(_Strict):
    """A phrase that blames, and what to write instead."""

    phrase: str = Field(min_length=2, max_length=80)
    suggestion: str = Field(min_length=1, max_length=400)
    # Only flagged when a person is the subject (a mention, a known name or a word such as
    # "he" or "the on-call" shortly before it): "the alert failed to fire" is not blaming.
    person_only: bool = False

    @field_validator("phrase")
    @classmethod
    def _phrase(cls, value: str) -> str:
        clean = " ".join(value.split())
        if not re.search(r"\w", clean):
            raise ValueError(f"{value!r} has no letters: give the words to look for")
        return clean


_HINDSIGHT = (
    "hindsight: describe what people knew and saw at the time, and what would make the right "
    "action easier next time"
)
_JUDGEMENT = "a judgement of a person: describe what happened and what the system allowed"
_CULPRIT = "look for the contributing factors instead of a culprit"
_MEMORY = (
    "describe the step that did not happen and why the process relied on someone remembering "
    "it (a checklist, a guard, automation?)"
)


def _p(phrase: str, suggestion: str, person_only: bool = False) -> BlamelessPhrase:
    return BlamelessPhrase(phrase=phrase, suggestion=suggestion, person_only=person_only)


DEFAULT_PHRASES = [
    _p(
        "human error",
        "name the conditions that made the error likely (tooling, alerts, docs, fatigue, "
        "time pressure), not the person",
    ),
    _p("should have", _HINDSIGHT),
    _p("should've", _HINDSIGHT),
    _p("shouldn't have", _HINDSIGHT),
    _p("should not have", _HINDSIGHT),
    _p("could have avoided", _HINDSIGHT),
    _p("careless", _JUDGEMENT),
    _p("carelessness", _JUDGEMENT),
    _p("negligent", _JUDGEMENT),
    _p("negligence", _JUDGEMENT),
    _p("sloppy", _JUDGEMENT),
    _p("lazy", _JUDGEMENT),
    _p("incompetent", _JUDGEMENT),
    _p("stupid", _JUDGEMENT),
    _p("fault of", _CULPRIT),
    _p("'s fault", _CULPRIT),
    _p("at fault", _CULPRIT),
    _p("to blame", _CULPRIT),
    _p("blame", _CULPRIT),
    _p("dropped the ball", _CULPRIT),
    _p("forgot to", _MEMORY),
    _p("didn't bother", _JUDGEMENT),
    _p("did not bother", _JUDGEMENT),
    _p(
        "failed to",
        "say what did not happen and what made it hard to do, rather than that someone failed",
        person_only=True,
    ),
    _p("messed up", _JUDGEMENT),
    _p("screwed up", _JUDGEMENT),
    _p(
        "obviously",
        "what is obvious afterwards was not at the time: describe what was visible then",
    ),
]

# Verbs that, with a person as their subject, make the sentence about who failed.
DEFAULT_FAILURE_WORDS = [
    "broke",
    "caused",
    "missed",
    "forgot",
    "ignored",
    "deleted",
    "misconfigured",
    "mistyped",
    "botched",
    "overlooked",
    "neglected",
    "failed",
    "messed",
    "screwed",
    "made a mistake",
    "made an error",
    "made a typo",
]
# Nouns that blame a person in "Bob's mistake" or "a mistake by Bob".
DEFAULT_FAILURE_NOUNS = ["mistake", "error", "fault", "typo", "blunder", "oversight"]
# Words that stand for a person when no name is given.
DEFAULT_PERSON_WORDS = [
    "he",
    "she",
    "someone",
    "somebody",
    "the engineer",
    "the operator",
    "the on-call",
    "the oncall",
    "the developer",
    "the sre",
]

PERSON_SUGGESTION = (
    "names a person next to a failure: describe the action and what in the system allowed "
    "it (e.g. 'a config change reached production without a review'), not who did it"
)


class BlamelessSettings(_Strict):
    phrases: list[BlamelessPhrase] = Field(
        default_factory=lambda: list(DEFAULT_PHRASES),
        description="the phrases flagged (replaces the built-in list)",
    )
    extra_phrases: list[BlamelessPhrase] = Field(
        default_factory=list, description="phrases flagged besides `phrases`"
    )
    failure_words: list[str] = Field(default_factory=lambda: list(DEFAULT_FAILURE_WORDS))
    failure_nouns: list[str] = Field(default_factory=lambda: list(DEFAULT_FAILURE_NOUNS))
    person_words: list[str] = Field(default_factory=lambda: list(DEFAULT_PERSON_WORDS))
    distance: int = Field(
        default=3,
        ge=0,
        le=12,
        description="words allowed between a person and a failure word",
    )

    @field_validator("failure_words", "failure_nouns", "person_words")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        out = []
        for word in value:
            clean = " ".join(str(word).split()).lower()
            if not re.search(r"\w", clean):
                raise ValueError(f"{word!r} has no letters")
            out.append(clean)
        return out

    def all_phrases(self) -> list[BlamelessPhrase]:
        return [*self.phrases, *self.extra_phrases]


class ExtraSection(_Strict):
    """A section a team adds to its postmortems: written and stored like the built-in ones,
    edited from Slack and the CLI by its key, rendered after the review sections (or where a
    template places it with ``d.section("key")``)."""

    key: str = Field(description="how it is named in commands: lowercase letters, digits, _")
    title: str = Field(min_length=1, max_length=60, description="its heading")
    prompt: str = Field(
        default="",
        max_length=400,
        description="what belongs there, shown until someone writes it",
    )

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        key = sections.normalise(value)
        if not sections.KEY_RE.match(key):
            raise ValueError(
                f"section key {value!r}: 2 to 40 lowercase letters, digits or _, starting with a "
                "letter (e.g. customer_communication)"
            )
        if key in sections.TAKEN:
            raise ValueError(
                f"section key {value!r} is a built-in section or one of its names: built-in are "
                f"{', '.join(sections.BUILT_IN_KEYS)}"
            )
        return key

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        clean = " ".join(value.split())
        if not clean:
            raise ValueError("is empty")
        return clean

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return " ".join(value.split())


class PostmortemSettings(_Strict):
    template_dir: Path | None = Field(
        default=None,
        description="a directory with postmortem.md.j2 and/or postmortem.html.j2 that replace "
        "the built-in templates (the others still come from the package)",
    )
    publish_dir: Path | None = Field(
        default=None, description="where `postmortem publish` writes (default data_dir/postmortems)"
    )
    due_business_days: int = Field(
        default=5,
        ge=0,
        le=60,
        description="a required postmortem is due this many business days (Mon–Fri) after "
        "the incident is resolved",
    )
    blameless: BlamelessSettings = Field(default_factory=BlamelessSettings)
    extra_sections: list[ExtraSection] = Field(
        default_factory=list,
        max_length=20,
        description="sections a team adds to every postmortem (key, title, prompt)",
    )

    @field_validator("extra_sections")
    @classmethod
    def _unique(cls, value: list[ExtraSection]) -> list[ExtraSection]:
        keys = [s.key for s in value]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"section key(s) given twice: {', '.join(twice)}")
        return value
