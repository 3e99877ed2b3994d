"""What the scheduler runs: the jobs with their schedules, and their slots.

Timing comes from APScheduler triggers: ``CronTrigger.from_crontab(expr, timezone=tz)`` for
``cron`` jobs, an ``IntervalTrigger`` anchored at a fixed epoch for ``every`` jobs (so all
replicas compute the same slots). :func:`resolve_jobs` joins the registered jobs with their
configured schedules; :mod:`incidentbot.scheduler.core` fires their slots.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from incidentbot.errors import DomainError
from incidentbot.scheduler.config import SchedulerSettings, check_cron, check_timezone
from incidentbot.scheduler.registry import JobFn, RegisteredJob, registered

DEFAULT_GRACE = 60.0
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class SchedulerError(DomainError):
    """A schedule that cannot be used (an unknown job, a bad cron expression)."""


@dataclass(frozen=True)
class Job:
    name: str
    fn: JobFn | None
    trigger: BaseTrigger | None
    schedule: str  # "cron 0 9 * * MON (Europe/Berlin)", "every 5s", or why there is none
    grace: float
    enabled: bool
    idempotent: bool = False

    @property
    def runnable(self) -> bool:
        return self.enabled and self.fn is not None and self.trigger is not None

    def next_slot(self, after: datetime) -> datetime | None:
        """The first slot strictly after ``after`` (UTC)."""
        assert self.trigger is not None
        nxt = self.trigger.get_next_fire_time(after, after)
        return None if nxt is None else nxt.astimezone(UTC)

    def first_slot_from(self, start: datetime) -> datetime | None:
        """The first slot at or after ``start`` (UTC)."""
        assert self.trigger is not None
        nxt = self.trigger.get_next_fire_time(None, start)
        return None if nxt is None else nxt.astimezone(UTC)

    def slots(self, start: datetime, until: datetime) -> Iterator[datetime]:
        """Slots in [start, until], in order."""
        slot = self.first_slot_from(start)
        while slot is not None and slot <= until:
            yield slot
            slot = self.next_slot(slot)


def make_trigger(cron: str | None, every: float | None, timezone: str) -> BaseTrigger:
    if cron is not None:
        return CronTrigger.from_crontab(check_cron(cron), timezone=check_timezone(timezone))
    if every is not None:
        return IntervalTrigger(seconds=every, start_date=EPOCH, timezone=UTC)
    raise ValueError("no schedule: give cron or every")


def resolve_jobs(
    cfg: SchedulerSettings,
    default_timezone: str = "UTC",
    registry: dict[str, RegisteredJob] | None = None,
    *,
    strict: bool = True,
) -> list[Job]:
    """Registered jobs with their configured schedules. ``strict``: refuse unknown names."""
    reg = registered() if registry is None else registry
    entries = {entry.name: entry for entry in cfg.jobs}
    unknown = sorted(set(entries) - set(reg))
    if unknown and strict:
        known = ", ".join(sorted(reg)) or "none"
        raise SchedulerError(
            f"scheduler.jobs: no job named {unknown[0]!r} is registered (registered: {known}); "
            "import the module that defines it"
        )
    jobs = []
    for name in sorted(set(reg) | set(entries)):
        r, e = reg.get(name), entries.get(name)
        cron, every = (r.cron, r.every) if r else (None, None)
        if e is not None and (e.cron is not None or e.every is not None):
            cron, every = e.cron, e.every
        tz = (e.timezone if e else None) or (r.timezone if r else None) or default_timezone
        grace = (e.grace if e else None) or (r.grace if r else None) or DEFAULT_GRACE
        enabled = e.enabled if e is not None else bool(r and r.enabled)
        trigger: BaseTrigger | None = None
        if r is None:
            schedule = "not registered"
        elif cron is None and every is None:
            schedule = "no schedule"
        else:
            try:
                trigger = make_trigger(cron, every, tz)
            except ValueError as exc:
                raise SchedulerError(f"scheduler job {name!r}: {exc}") from None
            schedule = f"cron {cron} ({tz})" if cron is not None else f"every {every:g}s"
        jobs.append(Job(name, r.fn if r else None, trigger, schedule, float(grace), enabled,
                        bool(r and r.idempotent)))  # fmt: skip
    return jobs
