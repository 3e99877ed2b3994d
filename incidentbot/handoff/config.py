"""Handoff configuration: the rotations whose shifts are handed over, and where and when."""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from incidentbot.chat_text import channel_name
from incidentbot.scheduler.config import check_cron, check_timezone

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def cron_trigger(expr: str, timezone: str) -> CronTrigger:
    """The trigger for a five-field cron expression (days of the week by name), read in
    ``timezone``."""
    return CronTrigger.from_crontab(check_cron(expr), timezone=ZoneInfo(timezone))


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="what people type: `/incident handoff rpc`")
    schedule_id: str | None = Field(default=None, description="PagerDuty schedule (P...)")
    escalation_policy_id: str | None = Field(
        default=None, description="PagerDuty escalation policy; its level 1 is the on-call"
    )
    channel: str = Field(description="Slack channel (name or id) the handoff is posted in")
    cron: str = Field(default="0 9 * * MON", description="when shifts change hands")
    shift_change: bool = Field(
        default=False,
        description="post at each shift change of the PagerDuty schedule (checked every "
        "minute) instead of at the `cron` times",
    )
    timezone: str = Field(default="UTC", description="the cron's and the message's time zone")
    ack_reminder_minutes: int = Field(
        default=30,
        ge=0,
        le=1440,
        description="minutes after the handoff is posted to remind an incoming on-call who "
        "has not acknowledged it (0: never)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"rotation name {value!r}: use lower case letters, digits, - and _")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        return channel_name(value)

    @model_validator(mode="after")
    def _check(self) -> Rotation:
        if bool(self.schedule_id) == bool(self.escalation_policy_id):
            raise ValueError(
                f"rotation {self.name!r}: give exactly one of schedule_id and escalation_policy_id"
            )
        cron_trigger(self.cron, self.timezone)
        if self.shift_change and not self.schedule_id:
            raise ValueError(
                f"rotation {self.name!r}: shift_change needs a schedule_id (an escalation "
                "policy has no shifts of its own)"
            )
        return self


class HandoffSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rotations: list[Rotation] = Field(default_factory=list)
    top_alert_groups: int = Field(default=5, ge=1, le=20, description="alert groups listed")
    template_dir: Path | None = Field(
        default=None,
        description="a directory with a handoff.md.j2 that replaces the built-in handoff message",
    )

    @field_validator("rotations")
    @classmethod
    def _unique(cls, value: list[Rotation]) -> list[Rotation]:
        seen: set[str] = set()
        for i, rotation in enumerate(value):
            if rotation.name in seen:
                raise ValueError(f"rotations[{i}].name: duplicate rotation {rotation.name!r}")
            seen.add(rotation.name)
        return value

    def rotation(self, name: str | None) -> Rotation:
        """The named rotation, or the only one when ``name`` is None (ValueError otherwise)."""
        names = ", ".join(r.name for r in self.rotations) or "none configured"
        if not self.rotations:
            raise ValueError("no handoff rotations are configured: add them under `handoff:`")
        if name is None:
            if len(self.rotations) == 1:
                return self.rotations[0]
            raise ValueError(f"name the rotation: {names}")
        for rotation in self.rotations:
            if rotation.name == name.strip().lower():
                return rotation
        raise ValueError(f"unknown rotation {name!r}: configured are {names}")
