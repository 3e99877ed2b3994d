"""Requests from outside the worker: cancel a run, decide for a parked one, resume one that
needs attention.

Both can come from any process (Slack buttons, the CLI, another replica) at any moment, also
while a worker is executing the run, so each is a conditional change on the run row: a cancel
of a run no worker holds ends it at once, otherwise it is flagged for the worker to honour
before the next step; a decision counts only if the run is still parked, before its deadline.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col

from incidentbot.db import db_now
from incidentbot.errors import DomainError
from incidentbot.ledger.events import emit, event_for
from incidentbot.ledger.leases import end_run
from incidentbot.ledger.models import (
    CANCELLED,
    ENDED,
    EXPIRED,
    NEEDS_ATTENTION,
    PARKED,
    PENDING,
    RUNNING,
    STEP_FAILED,
    STEP_PENDING,
    STEP_SKIPPED,
    STEP_STARTED,
    Run,
    Step,
)
from incidentbot.ledger.redact import redact_text
from incidentbot.ledger.service import (
    clean_text,
    get_run,
    get_step,
    get_steps,
)
from incidentbot.ledger.spec import steps_of

log = logging.getLogger(__name__)

_DECISION = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def cancel(session: Session, run_id: int, *, actor: str, reason: str | None = None) -> str:
    """Stop a run before its next step and release its lock; returns what happened.

    A run no worker is executing (pending, backing off, parked, needs_attention) is cancelled
    at once, except a run that needs attention at a step with rollback steps: those run first
    (see :func:`_abort_into_rollback`). A running one is flagged; its worker stops before the
    next step.
    """
    actor = clean_text(actor, "the actor", 128)
    run = get_run(session, run_id, for_update=True)
    now = db_now(session)
    if run.status in ENDED:
        raise DomainError(f"run {run_id} already {run.status}: nothing to cancel")
    why = f"cancelled by {actor}" + (f": {reason.strip()}" if reason and reason.strip() else "")
    run.cancel_requested_at = run.cancel_requested_at or now
    run.cancel_requested_by = run.cancel_requested_by or actor
    if run.status == RUNNING:
        run.error = redact_text(why)
        run.updated_at = now
        session.add(run)
        emit(session, event_for(run, "run.cancel_requested", now, data={"actor": actor}))
        names = [s.name for s in steps_of(run.spec)[run.cursor + 1 :] if s.always]
        then = f", then runs its clean-up steps ({', '.join(names)})" if names else ""
        return f"run {run_id}: cancel requested; it stops before its next step{then}"
    note = ""
    if run.status == NEEDS_ATTENTION:
        step = get_step(session, run_id, run.cursor)
        rolling_back = _abort_into_rollback(session, run, step, now, why)
        if rolling_back is not None:
            return rolling_back
        if step.status == STEP_STARTED:
            note = f" ({step.label} was left in an unknown state)"
    cleaning = _cancel_into_cleanup(session, run, now, why + note)
    if cleaning is not None:
        return cleaning
    end_run(session, run, CANCELLED, now, why + note)
    released = f"; lock on {run.target!r} released" if run.target else ""
    return f"run {run_id}: cancelled{note}{released}"


def _cancel_into_cleanup(session: Session, run: Run, now: datetime, why: str) -> str | None:
    """A cancelled run with clean-up (``always``) steps still ahead goes back to the workers
    to run them (keeping its lock), then ends cancelled. None if it has none."""
    specs = steps_of(run.spec)
    first = run.cursor
    if run.status == NEEDS_ATTENTION:  # the step in doubt is not run again
        step = get_step(session, _run_id(run), run.cursor)
        first = run.cursor + 1
    names = [s.name for s in specs[first:] if s.always]
    if not names:
        return None
    if run.status == NEEDS_ATTENTION:
        step.status = STEP_SKIPPED
        step.finished_at = now
        step.error = redact_text(f"{why} ({step.error or 'it needed attention'})")
        session.add(step)
        run.cursor = first
    _requeue(session, run, now, error=redact_text(why))
    emit(
        session,
        event_for(run, "run.cancel_requested", now, data={"actor": run.cancel_requested_by}),
    )
    log.info("run %s: %s; running its clean-up steps", run.id, why)
    return (
        f"run {run.id}: {why}; running its clean-up steps first ({', '.join(names)}), "
        "then it ends cancelled"
    )


def _run_id(run: Run) -> int:
    assert run.id is not None
    return run.id


def _abort_into_rollback(
    session: Session, run: Run, step: Step, now: datetime, why: str
) -> str | None:
    """Aborting at a step in doubt that has rollback steps fails the step and runs them (they
    put back what the steps before it changed, or say what is left); the run ends failed
    after them and keeps its lock until then. None if the step has none."""
    specs = steps_of(run.spec)
    rollbacks = [s.name for s in specs if s.rollback_for == step.idx]
    if not rollbacks or run.failed_step is not None:
        return None
    step.status = STEP_FAILED
    step.error = redact_text(f"{why} ({step.error or 'it needed attention'})")
    step.finished_at = now
    session.add(step)
    run.cancel_requested_at = None
    run.cancel_requested_by = None
    run.failed_step = step.idx
    run.cursor = step.idx + 1
    _requeue(session, run, now)
    emit(session, event_for(run, "step.failed", now, step, error=step.error))
    emit(session, event_for(run, "run.rolling_back", now, step, error=step.error))
    log.info("run %s: %s at %s; running its rollback steps", run.id, why, step.label)
    return (
        f"run {run.id}: {why} at {step.label}; running its on_failure steps first "
        f"({', '.join(rollbacks)}), then it ends failed"
    )


@dataclass(frozen=True)
class DecisionResult:
    accepted: bool
    run_id: int
    message: str
    decision: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None


def decide(
    session: Session, run_id: int, decision: str, *, by: str, step: int | None = None
) -> DecisionResult:
    """Record the decision a parked run waits for. Only the first decision counts.

    The conditional UPDATE (still parked, deadline not passed, and ``step`` — 0-based — is the
    one waiting, when given) is what makes a double click or two approvers racing safe: the
    second matches nothing and is reported as ignored, with the decision that did count.
    """
    outcome = str(decision).strip().lower()
    if not _DECISION.match(outcome) or outcome == EXPIRED:
        raise DomainError(
            f"invalid decision {decision!r}: use a word such as approved or rejected"
            + (" (expired is set by the ledger itself)" if outcome == EXPIRED else "")
        )
    by = clean_text(by, "the person deciding", 128)
    get_run(session, run_id)  # NotFound first
    now = db_now(session)
    conditions = [
        col(Run.id) == run_id,
        col(Run.status) == PARKED,
        col(Run.wake_at) > now,
    ]
    if step is not None:
        conditions.append(col(Run.cursor) == step)
    result = session.execute(
        update(Run)
        .where(*conditions)
        .values(status=PENDING, wake_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    run = get_run(session, run_id)
    if result.rowcount == 1:  # type: ignore[attr-defined]
        waiting = get_step(session, run_id, run.cursor)
        waiting.decision, waiting.decided_by, waiting.decided_at = outcome, by, now
        session.add(waiting)
        emit(session, event_for(run, "run.decided", now, waiting, data={"decision": outcome}))
        log.info("run %s %s: %s by %s", run_id, waiting.label, outcome, by)
        return DecisionResult(
            True, run_id, f"run {run_id}: {waiting.label} {outcome} by {by}", outcome, by, now
        )
    return _ignored(session, run, outcome, by, step, now)


def _ignored(
    session: Session, run: Run, outcome: str, by: str, step: int | None, now: datetime
) -> DecisionResult:
    rid = run.id
    assert rid is not None
    steps = get_steps(session, rid)
    decided = [s for s in steps if s.decision is not None and (step is None or s.idx == step)]
    prefix = f"run {rid}: {outcome} by {by} ignored"
    if decided:
        last = decided[-1]
        assert last.decided_at is not None
        return DecisionResult(
            False,
            rid,
            f"{prefix}: {last.label} was already decided: {last.decision} by {last.decided_by} "
            f"at {last.decided_at:%Y-%m-%d %H:%M:%S} UTC",
            last.decision,
            last.decided_by,
            last.decided_at,
        )
    if run.status == PARKED and run.wake_at is not None and run.wake_at <= now:
        message = f"{prefix}: the deadline passed at {run.wake_at:%Y-%m-%d %H:%M:%S} UTC"
    elif run.status == PARKED and step is not None:
        message = f"{prefix}: it waits at step {run.cursor + 1}, not step {step + 1}"
    else:
        message = f"{prefix}: the run is {run.status}, not waiting for a decision"
    return DecisionResult(False, rid, message)


def resume(session: Session, run_id: int, *, actor: str, skip: bool = False) -> str:
    """Continue a run that stopped as ``needs_attention``; a person has looked at the target.

    ``skip=False`` runs the step in doubt again (it did not happen, or doing it twice is
    fine); ``skip=True`` marks it skipped and goes on with the next step (it did happen, or it
    is not needed). The run keeps its target lock throughout. Only the first of two racing
    requests counts: the run must still be ``needs_attention``.
    """
    actor = clean_text(actor, "the actor", 128)
    run = get_run(session, run_id, for_update=True)
    if run.status != NEEDS_ATTENTION:
        raise DomainError(
            f"run {run_id} {_state(run.status)}: only a run that needs attention can be "
            + ("skipped past a step" if skip else "resumed")
        )
    now = db_now(session)
    step = get_step(session, run_id, run.cursor)
    if skip:
        step.status = STEP_SKIPPED
        step.finished_at = now
        step.error = redact_text(f"skipped by {actor} ({step.error or 'needed attention'})")
        run.cursor = step.idx + 1
        what = f"{step.label} skipped by {actor}"
    else:
        step.status = STEP_PENDING
        step.next_attempt_at = None
        step.error = redact_text(f"resumed by {actor} after: {step.error or 'needing attention'}")
        what = f"{step.label} to run again, resumed by {actor}"
    session.add(step)
    _requeue(session, run, now)
    kind = "step.skipped" if skip else "run.resumed"
    emit(session, event_for(run, kind, now, step, data={"actor": actor, "resumed": True}))
    log.info("run %s: %s", run_id, what)
    return f"run {run_id}: {what}"


_STATES = {
    "pending": "is waiting for a worker",
    "running": "is running",
    "parked": "is waiting for a decision",
    "succeeded": "has succeeded",
    "failed": "has failed",
    "cancelled": "was cancelled",
}


def _state(status: str) -> str:
    return _STATES.get(status, f"is {status}")


def _requeue(session: Session, run: Run, now: datetime, *, error: str | None = None) -> None:
    """Hand the run back to whichever worker claims it next (no owner, lease or wake time)."""
    run.status = PENDING
    run.owner = None
    run.lease_expires_at = None
    run.wake_at = None
    run.finished_at = None
    run.error = error
    run.updated_at = now
    session.add(run)
