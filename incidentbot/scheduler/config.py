"""The ``scheduler`` section of the settings: when each job runs.

A job's code is registered by name (:func:`incidentbot.scheduler.registry.job`); an entry here
with the same name sets or overrides its schedule (``cron`` with a ``timezone``, or ``every``
N seconds), its ``grace`` and whether it is ``enabled``.

Imported by :mod:`incidentbot.config`; must not import it back.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_cron(expr: str) -> str:
    """A five-field crontab expression (minute hour day month weekday), else ValueError."""
    from apscheduler.triggers.cron import CronTrigger

    clean = " ".join(expr.split())
    fields = clean.split(" ")
    if len(fields) != 5:
        raise ValueError(
            f"{expr!r} is not a five-field cron expression (minute hour day month weekday), "
            "e.g. '0 9 * * MON'; for seconds use `every`"
        )
    if re.search(r"\d", fields[4]):
        # In numbers cron counts days from Sunday and the scheduler library from Monday: a
        # number would silently mean the wrong day.
        raise ValueError(f"{expr!r}: name the day of the week (MON, TUE-FRI, ...), not a number")
    try:
        CronTrigger.from_crontab(clean, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"{expr!r} is not a valid cron expression: {exc}") from None
    return clean


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}, e.g. UTC or Europe/Berlin") from None
    return name


class JobSchedule(_Strict):
    """One job's schedule. ``name`` must be a registered job."""

    name: str = Field(min_length=1, max_length=200)
    cron: str | None = Field(default=None, description="five-field cron expression")
    every: float | None = Field(
        default=None, gt=0, le=86400 * 366, description="seconds between runs (instead of cron)"
    )
    timezone: str | None = Field(default=None, description="for cron; default: `timezone`")
    grace: float | None = Field(
        default=None, ge=1, le=86400 * 31,
        description="seconds after its slot a missed run still runs; older ones are skipped",
    )  # fmt: skip
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @model_validator(mode="after")
    def _one_trigger(self) -> JobSchedule:
        if self.cron is not None and self.every is not None:
            raise ValueError(f"job {self.name!r}: give either cron or every, not both")
        if self.every is not None and self.timezone is not None:
            raise ValueError(f"job {self.name!r}: timezone only applies to cron")
        return self


class SchedulerSettings(_Strict):
    jobs: list[JobSchedule] = Field(default_factory=list)
    imports: list[str] = Field(
        default_factory=list,
        description="Python modules that register jobs (`@job`), imported by the bot",
    )
    retry: float = Field(
        default=1.0, gt=0, le=60,
        description="seconds between a standby's attempts to become the scheduler",
    )  # fmt: skip

    @field_validator("jobs")
    @classmethod
    def _unique(cls, jobs: list[JobSchedule]) -> list[JobSchedule]:
        seen: set[str] = set()
        for entry in jobs:
            if entry.name in seen:
                raise ValueError(f"job {entry.name!r} is listed twice")
            seen.add(entry.name)
        return jobs
