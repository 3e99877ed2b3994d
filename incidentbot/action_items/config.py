"""Action item settings: where items are exported as GitHub issues.

The token is a secret (``INCIDENTBOT_GITHUB_TOKEN``), so it is a top-level setting read only
from the environment or the secrets directory; everything else lives under ``action_items``.
"""

from __future__ import annotations

import re
import string

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_GITHUB_API = "https://api.github.com"
LABEL_PLACEHOLDERS = ("priority", "severity")
_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")


class ActionItemSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    github_repo: str | None = Field(
        default=None, description="owner/name of the repository items are exported to"
    )
    github_api_url: str = Field(
        default=DEFAULT_GITHUB_API, description="GitHub REST API base URL (GitHub Enterprise)"
    )
    labels: list[str] = Field(
        default_factory=lambda: ["incident-follow-up"],
        description="labels of exported issues; {priority} and {severity} are filled in",
    )
    reaction: str = Field(
        default="ballot_box_with_check",
        description="the reaction (emoji name, no colons) that makes a message an action item",
    )
    timeout: float = Field(default=10.0, gt=0, le=60, description="seconds to wait for GitHub")

    @field_validator("github_repo")
    @classmethod
    def _repo(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not _REPO.match(value) or value.split("/")[1] in (".", ".."):
            raise ValueError(f"{value!r} is not a GitHub repository: use owner/name")
        return value

    @field_validator("reaction")
    @classmethod
    def _reaction(cls, value: str) -> str:
        value = value.strip().strip(":")
        if not re.fullmatch(r"[a-z0-9_+'-]+", value):
            raise ValueError(f"{value!r} is not an emoji name, e.g. ballot_box_with_check")
        return value

    @field_validator("github_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for label in value:
            label = label.strip()
            if not label:
                raise ValueError("a label is empty")
            try:
                names = {f for _, f, _, _ in string.Formatter().parse(label) if f is not None}
            except ValueError:
                raise ValueError(f"label {label!r}: unbalanced braces") from None
            unknown = names - set(LABEL_PLACEHOLDERS)
            if unknown:
                raise ValueError(
                    f"label {label!r}: unknown placeholder {{{sorted(unknown)[0]}}} "
                    f"(allowed: {', '.join('{' + p + '}' for p in LABEL_PLACEHOLDERS)})"
                )
            if len(label) > 50:
                raise ValueError(f"label {label!r} is longer than 50 characters")
            out.append(label)
        return out
