"""Paging configuration: which PagerDuty service each name people type stands for."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class PagedService(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    service_id: str = Field(description="PagerDuty service id (P...)")
    escalation_policy_id: str | None = Field(default=None, description="for /oncalls")
    slack_oncall_group: str | None = Field(
        default=None, description="Slack user group (S...) mentioned if a page finally fails"
    )
    declare: bool = Field(
        default=False,
        description="an incident triggered in PagerDuty on this service declares one of ours",
    )
    attach: bool = Field(
        default=False,
        description="an incident triggered in PagerDuty on this service attaches to the open "
        "incident of ours already paging it, if there is one",
    )
    declare_severity: str | None = Field(
        default=None, description="the severity such a declare gets (default: default_severity)"
    )


class PagerDutySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_url: str | None = Field(default=None, description="REST API base URL override")
    events_url: str | None = Field(default=None, description="Events API base URL override")
    ca_file: str | None = Field(default=None, description="CA bundle for a private endpoint")
    from_email: str | None = Field(
        default=None, description="email of the PagerDuty user the bot acts as (From header)"
    )
    default_service: str | None = None
    resolve_with_incident: bool = Field(
        default=True, description="resolving our incident resolves the pages it opened"
    )
    services: dict[str, PagedService] = Field(default_factory=dict)

    @field_validator("services")
    @classmethod
    def _names(cls, value: dict[str, PagedService]) -> dict[str, PagedService]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
                raise ValueError(
                    f"service name {name!r}: use lower case letters, digits, '-' and '_'"
                )
        return value

    @model_validator(mode="after")
    def _default(self) -> PagerDutySettings:
        if self.default_service and self.default_service not in self.services:
            known = ", ".join(sorted(self.services)) or "none configured"
            raise ValueError(
                f"default_service {self.default_service!r} is not a configured service ({known})"
            )
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.services)


def parse_routing_keys(text: str | None, services: dict[str, PagedService]) -> dict[str, str]:
    """``rpc=KEY,validators=KEY`` (from the secret) as a dict; unknown names are refused."""
    keys: dict[str, str] = {}
    for part in (text or "").replace("\n", ",").split(","):
        if not part.strip():
            continue
        name, sep, key = part.partition("=")
        name = name.strip().lower()
        if not sep or not key.strip():
            raise ValueError(f"pagerduty_routing_keys: {name or part!r} has no key: use name=KEY")
        if name not in services:
            known = ", ".join(sorted(services)) or "none configured"
            raise ValueError(f"pagerduty_routing_keys: unknown service {name!r} ({known})")
        keys[name] = key.strip()
    return keys
