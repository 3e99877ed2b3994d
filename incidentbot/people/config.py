"""The ``people`` section of the settings: who is who across the tools a team uses.

Each entry is one human: the name outputs show, and the identities that stand for them: a
Slack user id, an email (PagerDuty users are matched by it), a GitHub login, and the CLI users
(OS login names, or what ``--as`` says) that act as them. Slack users need no entry: the bot
looks them up when it first sees them. An entry is for what Slack cannot tell (the CLI user
``bob`` is the Slack user ``U0N581U33XT``) or for people who are not in Slack.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GITHUB = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_CLI = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")


class PersonEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, description="the name outputs show")
    email: str | None = Field(default=None, max_length=320)
    slack: str | None = Field(default=None, description="Slack user id, e.g. U0N581U33XT")
    github: str | None = Field(default=None, description="GitHub login")
    cli: list[str] = Field(default_factory=list, description="CLI users acting as this person")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("name is empty")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        if v.count("@") != 1 or v.startswith("@") or v.endswith("@") or " " in v:
            raise ValueError(f"{v!r} is not an email address")
        return v

    @field_validator("slack")
    @classmethod
    def _slack(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().removeprefix("@")
        if not _SLACK_ID.match(v):
            raise ValueError(f"{v!r} is not a Slack user id (like U0N581U33XT)")
        return v

    @field_validator("github")
    @classmethod
    def _github(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().removeprefix("@")
        if not _GITHUB.match(v):
            raise ValueError(f"{v!r} is not a GitHub login")
        return v

    @field_validator("cli")
    @classmethod
    def _cli(cls, v: list[str]) -> list[str]:
        out = [u.strip() for u in v]
        for user in out:
            if not _CLI.match(user):
                raise ValueError(f"{user!r} is not a user name")
        return out


def _duplicates(values: list[str]) -> list[str]:
    return sorted(v for v, n in Counter(values).items() if n > 1)


def validate_people(entries: list[PersonEntry]) -> list[PersonEntry]:
    """The list, or ValueError naming an identity given to two people."""
    checks = {
        "name": [e.name.lower() for e in entries],
        "email": [e.email.lower() for e in entries if e.email],
        "slack": [e.slack for e in entries if e.slack],
        "github": [e.github.lower() for e in entries if e.github],
        "cli": [u for e in entries for u in e.cli],
    }
    for field, values in checks.items():
        twice = _duplicates(values)
        if twice:
            raise ValueError(f"{field} {', '.join(twice)} is given to two people")
    return entries
