"""Scheduled jobs in code: ``@job("name", cron=..., timezone=...)`` registers a callable.

A job is called with a :class:`JobContext` for one slot. The schedule given here is the
default; a ``scheduler.jobs`` entry with the same name in the configuration overrides it (or
gives one to a job registered without a schedule). A job without any schedule does not run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class JobContext:
    job: str
    slot: datetime  # the scheduled UTC time this run is for
    scheduler: str  # the name of the scheduler process running it
    engine: Engine
    attempt: int = 1  # 2 when an idempotent run is taken over from a scheduler that died
    grace: float = 60.0  # the job's grace, as configured: how late a slot may still run

    @property
    def token(self) -> str:
        """The same for every attempt at this slot: pass it to APIs that deduplicate."""
        return f"scheduler:{self.job}:{self.slot.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


JobFn = Callable[[JobContext], Any]


@dataclass(frozen=True)
class RegisteredJob:
    name: str
    fn: JobFn
    cron: str | None = None
    every: float | None = None
    timezone: str | None = None
    grace: float | None = None
    enabled: bool = True
    # Safe to run again for a slot whose previous scheduler died mid-run (see docs/scheduling.md).
    idempotent: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, RegisteredJob] = {}


def job(
    name: str,
    *,
    cron: str | None = None,
    every: float | None = None,
    timezone: str | None = None,
    grace: float | None = None,
    enabled: bool = True,
    idempotent: bool = False,
) -> Callable[[JobFn], JobFn]:
    """Register ``fn`` as the job ``name`` (a decorator)."""

    def register(fn: JobFn) -> JobFn:
        _REGISTRY[name] = RegisteredJob(
            name, fn, cron=cron, every=every, timezone=timezone, grace=grace,
            enabled=enabled, idempotent=idempotent,
        )  # fmt: skip
        return fn

    return register


def registered() -> dict[str, RegisteredJob]:
    return dict(_REGISTRY)


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)
