"""Clean-up steps (``always: true``): the run-level guarantee that what a run changed is put
back, or the run says what is left, whether it failed, timed out or was cancelled.

A clean-up step runs in order like any other step. When the run stops before reaching it — a
step failed for good, or a person cancelled the run — the ledger still runs each clean-up step
after the point where it stopped, durably and fenced like any step, before it ends the run
(failed or cancelled) and releases its target lock. The run's end message says which clean-up
steps ran: ``cancelled by alice; ran the clean-up steps: Put it back``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlmodel import Session

from incidentbot.ledger.events import emit, event_for
from incidentbot.ledger.models import (
    STEP_FAILED,
    STEP_PENDING,
    STEP_SKIPPED,
    STEP_STARTED,
    STEP_SUCCEEDED,
    Run,
    Step,
)
from incidentbot.ledger.service import get_step, get_steps
from incidentbot.ledger.spec import StepSpec


def ahead(specs: Sequence[StepSpec], index: int) -> list[str]:
    """Names of the clean-up steps after step ``index`` (0-based)."""
    return [s.name for s in specs[index + 1 :] if s.always]


def skip_to_next(
    session: Session, run: Run, specs: Sequence[StepSpec], step: Step | None, now: datetime
) -> Step | None:
    """A cancelled run: mark the steps from the cursor that are not clean-up steps skipped and
    return the next clean-up step to run (None when none is left)."""
    while step is not None and not specs[step.idx].always:
        if step.status in (STEP_PENDING, STEP_STARTED):
            step.status = STEP_SKIPPED
            step.finished_at = now
            session.add(step)
            emit(session, event_for(run, "step.skipped", now, step, data={"cancelled": True}))
        run.cursor = step.idx + 1
        session.add(run)
        step = get_step(session, _id(run), run.cursor) if run.cursor < len(specs) else None
    return step


def rollback_broken(session: Session, run: Run, specs: Sequence[StepSpec]) -> bool:
    """True if one of the failed step's rollback steps failed: the others are not run."""
    if run.failed_step is None:
        return False
    return any(
        s.status == STEP_FAILED and specs[s.idx].rollback_for == run.failed_step
        for s in get_steps(session, _id(run))
    )


def cancelled_message(session: Session, run: Run, specs: Sequence[StepSpec]) -> str:
    base = run.error or f"cancelled by {run.cancel_requested_by}"
    since = run.cancel_requested_at

    def ran(step: Step) -> bool:
        return since is not None and step.started_at is not None and step.started_at >= since

    return base + summary(get_steps(session, _id(run)), specs, ran)


def failed_message(session: Session, run: Run, specs: Sequence[StepSpec]) -> str:
    assert run.failed_step is not None
    failed_at = run.failed_step
    steps = get_steps(session, _id(run))
    why = steps[failed_at].error or f"{steps[failed_at].label} failed"
    rollbacks = [s for s in steps if specs[s.idx].rollback_for == failed_at]
    broken = next((s for s in rollbacks if s.status == STEP_FAILED), None)
    if broken is not None:
        why += f"; rollback {broken.label} failed: {broken.error}"
    elif rollbacks:
        why += "; rolled back"
    return why + summary(steps, specs, lambda s: s.idx > failed_at and s.status != STEP_PENDING)


def summary(steps: Sequence[Step], specs: Sequence[StepSpec], ran: Callable[[Step], bool]) -> str:
    """``; ran the clean-up steps: Put it back`` (and any that failed), or nothing."""
    cleanup = [s for s in steps if specs[s.idx].always and ran(s)]
    done = [
        s.name
        for s in cleanup
        if s.status == STEP_SUCCEEDED and (s.output or {}).get("skipped") is not True
    ]
    parts = []
    if done:
        parts.append("ran the clean-up steps: " + ", ".join(done))
    parts.extend(
        f"clean-up {s.label} failed: {s.error}" for s in cleanup if s.status == STEP_FAILED
    )
    if cleanup and not parts:
        parts.append("no clean-up step was needed (their conditions were false)")
    return "".join(f"; {p}" for p in parts)


def _id(run: Run) -> int:
    assert run.id is not None
    return run.id
