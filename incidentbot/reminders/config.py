"""The ``reminders`` section of the settings: what the bot reminds people of, and how.

When the digests run is the scheduler's business: the built-in jobs (``reminders.*``) have
default times that a ``scheduler.jobs`` entry of the same name overrides.

Imported by :mod:`incidentbot.config`; must not import it back.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentbot.chat_text import channel_name
from incidentbot.durations import format_span
from incidentbot.policy_models import Duration


class RemindersSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status_updates: bool = Field(
        default=True,
        description="remind the commander when an incident has had no status update for its "
        "severity's cadence",
    )
    snooze: list[Duration] = Field(
        default_factory=lambda: [timedelta(minutes=15), timedelta(hours=1)],
        description="the snooze buttons on a status update reminder",
    )
    stale_after: Duration = Field(
        default=timedelta(days=7), description="an open incident older than this is stale"
    )
    postmortem_due_soon: int = Field(
        default=1,
        ge=0,
        le=30,
        description="days before a postmortem's due date its owner is first reminded",
    )
    channel: str | None = Field(
        default=None,
        description="channel name for the weekly overdue action item digest and for reminders "
        "of postmortems whose incident has no channel (default: `channels.digest`)",
    )

    @field_validator("snooze")
    @classmethod
    def _snooze(cls, value: list[timedelta]) -> list[timedelta]:
        if not 1 <= len(value) <= 3:
            raise ValueError("give one to three snooze durations, e.g. [15m, 1h]")
        for d in value:
            if not timedelta(minutes=1) <= d <= timedelta(days=1):
                raise ValueError(f"snooze {format_span(d) if d else '0m'} is not between 1m and 1d")
        return sorted(set(value))

    @field_validator("stale_after")
    @classmethod
    def _stale(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=1):
            raise ValueError("stale_after must be at least 1h, e.g. 7d")
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        return None if value is None else channel_name(value)
