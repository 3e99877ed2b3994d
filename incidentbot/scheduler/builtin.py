"""The jobs the bot schedules by itself: handoffs, their acknowledgement reminders, the
reminders of status updates, stale incidents, postmortems and overdue action items, and the
archiving of closed incidents' channels.

Their schedules are defaults: a ``scheduler.jobs`` entry with the same name overrides one (a
different cron, a longer grace, or ``enabled: false``). They need the bot's Slack (and, for
handoffs, PagerDuty) adapters: :func:`builtin_jobs` binds them to :class:`Services`; without
services (``incidentbot jobs list``) the jobs are listed but cannot run. The handoff jobs are
whatever the bot passes as :class:`HandoffJobs`: the scheduler never imports a door.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.handoff.config import Rotation
from incidentbot.modules import import_modules
from incidentbot.ports import Chat
from incidentbot.scheduler.core import Scheduler
from incidentbot.scheduler.jobs import resolve_jobs
from incidentbot.scheduler.registry import JobContext, RegisteredJob, registered

DAILY_GRACE = 6 * 3600.0  # a daily digest missed during a morning outage still goes out
HANDOFF_GRACE = 3600.0
POLL_GRACE = 120.0
STATUS_JOB = "reminders.status"
STALE_JOB = "reminders.stale"
POSTMORTEM_JOB = "reminders.postmortems"
ACTIONS_JOB = "reminders.action_items"
ACK_JOB = "handoff.ack_reminders"
IMPACT_JOB = "impact.sample"
ARCHIVE_JOB = "channels.archive"


class HandoffJobs(Protocol):
    """What the scheduled handoff jobs call: post the handoff due at a slot (once), and remind
    of handoffs nobody acknowledged. The bot wires in its handoff operations."""

    def scheduled(self, rotation: Rotation, slot: datetime, grace: float) -> str | None: ...

    def remind(self, now: datetime | None = None) -> int: ...


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    chat: Chat
    # None when no rotation is configured: the handoff jobs then do not exist.
    handoffs: HandoffJobs | None = None


def handoff_job(name: str) -> str:
    return f"handoff.{name}"


def builtin_jobs(settings: Settings, services: Services | None) -> dict[str, RegisteredJob]:
    """The bot's own jobs by name, bound to ``services`` (None: listed, not runnable)."""
    tz = settings.timezone

    def bound(make: Callable[[Services, JobContext], Any]) -> Callable[[JobContext], Any]:
        def run(ctx: JobContext) -> Any:
            if services is None:
                raise RuntimeError("this job runs in the bot (incidentbot serve)")
            return make(services, ctx)

        return run

    jobs = [
        RegisteredJob(STATUS_JOB, bound(_status), every=60, grace=POLL_GRACE, idempotent=True,
                      enabled=settings.reminders.status_updates),
        RegisteredJob(STALE_JOB, bound(_stale), cron="0 10 * * MON-FRI", timezone=tz,
                      grace=DAILY_GRACE, idempotent=True),
        RegisteredJob(POSTMORTEM_JOB, bound(_postmortems), cron="0 10 * * MON-FRI",
                      timezone=tz, grace=DAILY_GRACE, idempotent=True),
        RegisteredJob(ACTIONS_JOB, bound(_action_items), cron="0 9 * * MON", timezone=tz,
                      grace=DAILY_GRACE, idempotent=True),
        RegisteredJob(IMPACT_JOB, bound(_impact), every=settings.impact.every, grace=POLL_GRACE,
                      idempotent=True, enabled=settings.impact.beacon_url is not None),
        RegisteredJob(ARCHIVE_JOB, bound(_archive), every=60, grace=POLL_GRACE, idempotent=True,
                      enabled=settings.channels.archive_after is not None),
    ]  # fmt: skip
    rotations = settings.handoff.rotations
    for rotation in rotations:
        run = bound(_handoff(rotation))
        if rotation.shift_change:
            jobs.append(RegisteredJob(handoff_job(rotation.name), run, every=60,
                                      grace=HANDOFF_GRACE, idempotent=True))  # fmt: skip
        else:
            jobs.append(RegisteredJob(handoff_job(rotation.name), run, cron=rotation.cron,
                                      timezone=rotation.timezone, grace=HANDOFF_GRACE,
                                      idempotent=True))  # fmt: skip
    if rotations:
        jobs.append(RegisteredJob(ACK_JOB, bound(_ack_reminders), every=60, grace=POLL_GRACE,
                                  idempotent=True))  # fmt: skip
    return {j.name: j for j in jobs}


def build_scheduler(
    settings: Settings, engine: Engine, services: Services | None, *, name: str | None = None
) -> Scheduler:
    """The scheduler with every registered job and, given ``services``, the bot's own jobs,
    as configured (an entry naming an unknown job is refused: SchedulerError). Without
    services the built-in jobs are left out (their entries are still recognised)."""
    import_modules(settings.scheduler.imports, "scheduler.imports")
    builtin = builtin_jobs(settings, services)
    jobs = resolve_jobs(settings.scheduler, settings.timezone, {**registered(), **builtin})
    if services is None:
        jobs = [j for j in jobs if j.name not in builtin]
    return Scheduler(engine, jobs, name=name, retry=settings.scheduler.retry)


def check(settings: Settings) -> None:
    """Refuse (SchedulerError) a ``scheduler.jobs`` entry naming no built-in or imported job,
    or a module in ``scheduler.imports`` that does not import."""
    import_modules(settings.scheduler.imports, "scheduler.imports")
    registry = {**registered(), **builtin_jobs(settings, None)}
    resolve_jobs(settings.scheduler, settings.timezone, registry=registry)


def _status(svc: Services, ctx: JobContext) -> int:
    from incidentbot.reminders.status import StatusReminders

    return StatusReminders(svc.settings, svc.engine, svc.chat).check(utcnow())


def _impact(svc: Services, ctx: JobContext) -> int:
    from incidentbot.impact.sampler import sample

    return sample(svc.engine, svc.settings, utcnow())


def _archive(svc: Services, ctx: JobContext) -> int:
    from incidentbot.incidents.archive import queue_due

    return queue_due(svc.engine, svc.settings, utcnow())


def _digests(svc: Services) -> Any:
    from incidentbot.reminders.digests import Digests

    return Digests(svc.settings, svc.engine, svc.chat)


def _stale(svc: Services, ctx: JobContext) -> int:
    return int(_digests(svc).stale(utcnow()))


def _postmortems(svc: Services, ctx: JobContext) -> int:
    return int(_digests(svc).postmortems(utcnow()))


def _action_items(svc: Services, ctx: JobContext) -> int:
    return int(_digests(svc).action_items(utcnow()))


def _handoffs(svc: Services) -> HandoffJobs:
    if svc.handoffs is None:
        raise RuntimeError("the handoff jobs were scheduled without the handoff operations")
    return svc.handoffs


def _handoff(rotation: Rotation) -> Callable[[Services, JobContext], Any]:
    def run(svc: Services, ctx: JobContext) -> Any:
        return _handoffs(svc).scheduled(rotation, ctx.slot, ctx.grace)

    return run


def _ack_reminders(svc: Services, ctx: JobContext) -> int:
    return int(_handoffs(svc).remind(utcnow()))
