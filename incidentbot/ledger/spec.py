"""What a run is asked to do: the step list snapshotted into the run when it starts.

The snapshot is plain JSON (action names and inputs, never code), so a worker running a newer
or older build still knows exactly what the run was started with. Validation happens once, at
start, so that a typo is refused to the person who asked instead of failing at 3 a.m.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from incidentbot.errors import DomainError

SPEC_VERSION = 1
# A started idempotent step found unfinished after a crash is re-run, but not forever: a step
# that kills its worker every time must end up failed rather than crash-looping the fleet.
MAX_INTERRUPTIONS = 3


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter for failures the action says are retryable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: float = Field(default=1.0, ge=0, description="delay before the 2nd attempt, s")
    max_backoff: float = Field(default=300.0, ge=0, description="cap on any one delay, s")

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Equal jitter: half the exponential delay is fixed, half random, so that runs failing
        together (a Slack 429 burst) spread out without ever retrying immediately. A server's
        Retry-After is a floor: retrying earlier would only earn another 429.
        """
        base = min(self.max_backoff, self.backoff * (2 ** max(0, attempt - 1)))
        delay = base / 2 + rand(0.0, base / 2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


class ParkSpec(BaseModel):
    """Wait for an outside decision (an approval) before running the step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = Field(gt=0, description="seconds until the decision expires")
    prompt: str = Field(default="", max_length=2000)


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    action: str = Field(min_length=1, max_length=128)
    input: dict[str, Any] = Field(default_factory=dict)
    # None: take the action's registered default when the run starts (then it is snapshotted).
    idempotent: bool | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout: float = Field(default=300.0, gt=0, description="seconds one attempt may take")
    park: ParkSpec | None = None
    # A rollback step: runs only if the step at this (0-based) index failed for good, after
    # it and before the run ends failed. Otherwise it is skipped.
    rollback_for: int | None = Field(default=None, ge=0)
    # A clean-up step: it runs in order like any step, and also when the run fails, times out
    # or is cancelled before reaching it (after the failed step's rollback steps are skipped
    # or run, before the run ends). See docs/ledger.md.
    always: bool = False

    @field_validator("name", "action")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


def parse_steps(steps: Sequence[StepSpec | dict[str, Any]]) -> list[StepSpec]:
    """Validate a step list, turning pydantic's report into one readable refusal."""
    if not steps:
        raise DomainError("a run needs at least one step")
    parsed: list[StepSpec] = []
    for i, raw in enumerate(steps, start=1):
        if isinstance(raw, StepSpec):
            parsed.append(raw)
            continue
        try:
            parsed.append(StepSpec.model_validate(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'step'}: {err['msg']}"
                for err in exc.errors()
            )
            raise DomainError(f"step {i} is invalid: {problems}") from None
    for i, step in enumerate(parsed, start=1):
        target = step.rollback_for
        if target is None:
            continue
        if step.always:
            raise DomainError(f"step {i} is invalid: a rollback step cannot also be always")
        if target >= i - 1 or parsed[target].rollback_for is not None:
            raise DomainError(
                f"step {i} is invalid: rollback_for must name an earlier step that is not "
                "itself a rollback step"
            )
    return parsed


def snapshot(steps: Sequence[StepSpec]) -> dict[str, Any]:
    return {"version": SPEC_VERSION, "steps": [s.model_dump(mode="json") for s in steps]}


def steps_of(spec: dict[str, Any]) -> list[StepSpec]:
    """Read a stored snapshot back (workers run exactly what was stored)."""
    version = spec.get("version")
    if version != SPEC_VERSION:
        raise ValueError(f"run spec version {version!r} is not understood by this build")
    return [StepSpec.model_validate(s) for s in spec["steps"]]
