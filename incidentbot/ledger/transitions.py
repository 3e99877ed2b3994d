"""The two commits around every step attempt, made by the worker that holds the run.

:func:`begin_step` decides what the run does next and, if a step is to run, marks it started
and commits before the worker touches the outside world. :func:`finish_step` records the
attempt's result in one commit: the step's outcome, its redacted output, the cursor, and when it
was the last step or a final failure, the end of the run and the release of its lock. Both are
fenced: a worker that lost its lease gets :class:`LeaseLost` and nothing is written. (Between
two steps, when the second is idempotent and plain, the worker makes the two one commit:
:mod:`incidentbot.ledger.chained`.)
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlmodel import Session

from incidentbot.ledger import cleanup, fenced
from incidentbot.ledger.actions import ActionRegistry, Decision
from incidentbot.ledger.attempts import Attempt, Outcome, Succeeded, attempt_of, recorded_output
from incidentbot.ledger.events import emit, event_for
from incidentbot.ledger.leases import end_run, fence, release
from incidentbot.ledger.models import (
    CANCELLED,
    EXPIRED,
    FAILED,
    NEEDS_ATTENTION,
    PARKED,
    STEP_FAILED,
    STEP_PENDING,
    STEP_SKIPPED,
    STEP_STARTED,
    STEP_SUCCEEDED,
    SUCCEEDED,
    Run,
    Step,
)
from incidentbot.ledger.redact import redact_text
from incidentbot.ledger.service import (
    LeaseLost,
    get_run,
    get_run_and_step,
    get_step,
)
from incidentbot.ledger.spec import MAX_INTERRUPTIONS, StepSpec, steps_of

log = logging.getLogger(__name__)

# How long a run whose next action this worker does not know waits before a worker (one with
# the action, after a rolling deploy) looks at it again.
UNKNOWN_ACTION_DELAY = 30.0


def _at(when: datetime | None) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S} UTC" if when else "an unknown time"


def _unknown(step: Step, run: Run, why: str) -> str:
    target = f"check {run.target}" if run.target else "check what it does"
    return (
        f"{step.label} ({step.action}, not idempotent) {why}: it may or may not have happened. "
        f"{target.capitalize()}, then resume, skip or abort the run"
    )


def begin_step(
    session: Session,
    run_id: int,
    owner: str,
    lease: float,
    actions: ActionRegistry,
    cache: dict[int, list[StepSpec]] | None = None,
) -> Attempt | None:
    """Decide the run's next move; if it is to run a step, mark that step started.

    Returns None when there is nothing to execute now: the run ended, stopped for attention,
    parked, went back to wait for a retry, or waits for a worker that knows its action.
    ``cache`` keeps parsed specs across calls (a run's spec never changes).
    """
    cached = cache.get(run_id) if cache is not None else None
    if cached is not None:
        fenced_at, plain = fenced.fence_and_start(session, run_id, owner, lease, cached, actions)
        if fenced_at is None:
            raise LeaseLost(run_id, owner)
        if plain is not None:
            fenced.step_event(session, "step.started", run_id, fenced_at, plain, {"owner": owner})
            return attempt_of(run_id, plain, cached, None)
        now = fenced_at
    else:
        now = fence(session, run_id, owner, lease)
    run, step = get_run_and_step(session, run_id, with_spec=cached is None)
    try:
        specs = cached if cached is not None else steps_of(run.spec)
    except ValueError as exc:  # written by a newer build: leave it to a worker that reads it
        _wait_for_another_worker(session, run, now, f"this worker ({owner}) {exc}")
        return None
    if cache is not None:
        cache[run_id] = specs
    if run.cursor >= len(specs):
        step = None

    if run.cancel_requested_at is not None:
        if step is not None and step.status == STEP_STARTED and not step.idempotent:
            why = f"was interrupted and a cancel was requested by {run.cancel_requested_by}"
            _attention(session, run, step, now, _unknown(step, run, why))
            return None
        # Cancelled: only the clean-up steps from here on still run, then the run ends.
        step = cleanup.skip_to_next(session, run, specs, step, now)
        if step is None:
            end_run(session, run, CANCELLED, now, cleanup.cancelled_message(session, run, specs))
            return None
    broken = cleanup.rollback_broken(session, run, specs)
    while step is not None and (
        step.status == STEP_SKIPPED or _not_needed(specs[step.idx], run, broken)
    ):
        if step.status != STEP_SKIPPED:
            step.status = STEP_SKIPPED
            step.finished_at = now
            session.add(step)
            emit(session, event_for(run, "step.skipped", now, step))
        run.cursor = step.idx + 1
        session.add(run)
        step = get_step(session, run_id, run.cursor) if run.cursor < len(specs) else None
    if step is None:
        _end(session, run, specs, now)
        return None
    spec = specs[run.cursor]
    rollback = dict(
        has_rollback=any(s.rollback_for == step.idx for s in specs),
        is_rollback=spec.rollback_for is not None,
        cleanup_ahead=bool(cleanup.ahead(specs, step.idx)),
    )

    if step.status == STEP_STARTED:
        if not step.idempotent:
            why = (
                f"was started at {_at(step.started_at)} (attempt {step.attempts}) "
                "and did not finish"
            )
            _attention(session, run, step, now, _unknown(step, run, why))
            return None
        if step.attempts >= spec.retry.max_attempts + MAX_INTERRUPTIONS:
            why = f"{step.label} was interrupted {step.attempts} times"
            if _fail(session, run, step, now, why, **rollback):  # on to its rollback steps
                return begin_step(session, run_id, owner, lease, actions, cache)
            return None
        log.warning("run %s: re-running idempotent %s after an interruption", run_id, step.label)

    if spec.park is not None and step.decision is None:
        if step.deadline_at is None:
            step.deadline_at = now + timedelta(seconds=spec.park.timeout)
        if step.deadline_at > now:
            session.add(step)
            _park(session, run, step, now, spec.park.prompt)
            return None
        step.decision, step.decided_by, step.decided_at = EXPIRED, "ledger", now
        emit(session, event_for(run, "run.decided", now, step, data={"decision": EXPIRED}))

    if step.next_attempt_at is not None and step.next_attempt_at > now:
        release(session, run, now, wake_at=step.next_attempt_at)
        return None

    if actions.get(spec.action) is None:
        note = f"this worker ({owner}) has no action {spec.action!r} for {step.label}"
        _wait_for_another_worker(session, run, now, note)
        return None

    if run.error is not None and run.failed_step is None and run.cancel_requested_at is None:
        # a note from an earlier hand-back (a cancel's message is kept for the end)
        run.error = None
        session.add(run)
    step.status = STEP_STARTED
    step.attempts += 1
    step.started_at = now
    step.finished_at = None
    step.next_attempt_at = None
    session.add(step)
    emit(session, event_for(run, "step.started", now, step, data={"owner": owner}))
    decision = None
    if step.decision is not None:
        assert step.decided_at is not None
        decision = Decision(step.decision, step.decided_by or "", step.decided_at)
    started = {
        "run_kind": run.kind,
        "incident_id": run.incident_id,
        "target": run.target,
        "index": step.idx,
        "name": step.name,
        "idempotent": step.idempotent,
        "attempt": step.attempts,
    }
    return attempt_of(run_id, started, specs, decision)


def finish_step(
    session: Session, attempt: Attempt, owner: str, lease: float, outcome: Outcome
) -> bool:
    """Record one attempt's result (and what follows from it) in a single commit.

    Returns True if this worker still holds the run and should go on to the next step."""
    if isinstance(outcome, Succeeded) and not attempt.last:
        # The common case: the fence moves the cursor, the step row takes the output.
        output = recorded_output(outcome)
        now = fenced.advance(session, attempt.run_id, owner, lease, attempt.index, output)
        if now is None:
            raise LeaseLost(attempt.run_id, owner)
        started = fenced.found_of(attempt)
        fenced.step_event(
            session, "step.succeeded", attempt.run_id, now, started, {"output": output}
        )
        return True
    if isinstance(outcome, Succeeded):  # the last step: the run ends, in three statements
        output = recorded_output(outcome)
        fenced_at, plain = fenced.finish_last(
            session, attempt.run_id, owner, lease, attempt.index, output
        )
        if fenced_at is None:
            raise LeaseLost(attempt.run_id, owner)
        if plain is not None:
            fenced.ended(session, attempt, fenced_at, output)
            return False
        now = fenced_at
    else:
        now = fence(session, attempt.run_id, owner, lease)
    run, found = get_run_and_step(session, attempt.run_id, attempt.index, with_spec=False)
    assert found is not None  # steps are written with their run
    step = found
    if isinstance(outcome, Succeeded):
        step.status = STEP_SUCCEEDED
        step.output = recorded_output(outcome)
        step.error = None
        step.finished_at = now
        session.add(step)
        run.cursor = step.idx + 1
        emit(session, event_for(run, "step.succeeded", now, step, data={"output": step.output}))
        cancelled = run.cancel_requested_at
        if attempt.last and not (
            cancelled is not None and step.started_at is not None and step.started_at >= cancelled
        ):  # (a clean-up step run after a cancel: begin_step ends the run cancelled)
            late = None
            if cancelled is not None:
                late = f"{run.error or 'cancel'} arrived after the last step had started"
            _end(session, run, None, now, late)
            return False
        session.add(run)
        return True

    verdict = outcome.verdict
    message = redact_text(verdict.message)
    retryable = verdict.kind == "retry" or (verdict.kind == "unknown" and attempt.idempotent)
    if retryable and step.attempts < attempt.retry.max_attempts:
        delay = attempt.retry.delay(step.attempts, verdict.retry_after)
        step.status = STEP_PENDING
        step.error = f"attempt {step.attempts} failed: {message}"
        step.next_attempt_at = now + timedelta(seconds=delay)
        step.finished_at = now
        session.add(step)
        data = {"delay": delay, "retry_after": verdict.retry_after, "error": message}
        emit(session, event_for(run, "step.retrying", now, step, error=message, data=data))
        log.info("run %s %s: %s; retry in %.2fs", run.id, step.label, step.error, delay)
        release(session, run, now, wake_at=step.next_attempt_at)
        return False
    if verdict.kind == "unknown":
        _attention(session, run, step, now, _unknown(step, run, f"failed with {message}"))
        return False
    if verdict.kind == "attention":
        _attention(session, run, step, now, f"{step.label}: {message}")
        return False
    if retryable:
        why = f"{step.label} failed after {step.attempts} attempts: {message}"
    else:
        why = f"{step.label} failed: {message}"
    step.error = message
    return _fail(
        session,
        run,
        step,
        now,
        why,
        has_rollback=attempt.has_rollback and verdict.rollback,
        is_rollback=attempt.is_rollback,
        cleanup_ahead=attempt.cleanup_ahead,
    )


def release_held(session: Session, run_id: int, owner: str, lease: float) -> None:
    """Give a held run back between steps (graceful shutdown): no one waits for a lease."""
    now = fence(session, run_id, owner, lease)
    release(session, get_run(session, run_id), now, note=f"released by {owner} on shutdown")


def _wait_for_another_worker(session: Session, run: Run, now: datetime, note: str) -> None:
    """Hand the run back for a while: during a rolling deploy another worker runs the build
    that knows this run; the note says on ``runs show`` why it waits."""
    note = f"{note}; waiting for a worker that has it"
    log.warning("run %s: %s", run.id, note)
    run.error = note
    release(session, run, now, wake_at=now + timedelta(seconds=UNKNOWN_ACTION_DELAY), note=note)


def _park(session: Session, run: Run, step: Step, now: datetime, prompt: str) -> None:
    run.status = PARKED
    run.owner = None
    run.lease_expires_at = None
    run.wake_at = step.deadline_at
    run.updated_at = now
    session.add(run)
    assert step.deadline_at is not None
    data = {"prompt": redact_text(prompt), "deadline": step.deadline_at.isoformat()}
    emit(session, event_for(run, "run.parked", now, step, data=data))
    log.info("run %s parked at %s until %s", run.id, step.label, _at(step.deadline_at))


def _end(
    session: Session,
    run: Run,
    specs: list[StepSpec] | None,
    now: datetime,
    note: str | None = None,
) -> None:
    """Past the last step: succeeded, or failed if what ran last were rollback or clean-up
    steps after a failure."""
    if run.failed_step is None:
        end_run(session, run, SUCCEEDED, now, note)
        return
    if specs is None:
        specs = steps_of(get_run(session, _run_id(run)).spec)
    end_run(session, run, FAILED, now, cleanup.failed_message(session, run, specs))


def _not_needed(spec: StepSpec, run: Run, rollback_broken: bool = False) -> bool:
    """Rollback steps run only after their own step failed; once a step failed, only its
    rollback steps (until one of them fails) and the clean-up steps run."""
    if run.failed_step is None:
        return spec.rollback_for is not None
    if spec.always:
        return False
    return spec.rollback_for != run.failed_step or rollback_broken


def _fail(
    session: Session,
    run: Run,
    step: Step,
    now: datetime,
    why: str,
    *,
    has_rollback: bool = False,
    is_rollback: bool = False,
    cleanup_ahead: bool = False,
) -> bool:
    """A step failed for good. Returns True if the run goes on with the step's rollback
    steps or the clean-up steps after it; otherwise the run has ended failed."""
    step.status = STEP_FAILED
    step.error = step.error or why
    step.finished_at = now
    session.add(step)
    emit(session, event_for(run, "step.failed", now, step, error=step.error))
    if run.failed_step is not None or run.cancel_requested_at is not None:
        # A rollback or clean-up step failed while the run stops: the next clean-up steps
        # still run (a failed rollback step stops the other rollback steps); the end message
        # names it.
        run.cursor = step.idx + 1
        run.updated_at = now
        session.add(run)
        log.info("run %s: %s; going on with the clean-up steps", run.id, why)
        return True
    if (has_rollback or cleanup_ahead) and run.failed_step is None:
        step.error = redact_text(why)
        run.failed_step = step.idx
        run.cursor = step.idx + 1
        run.updated_at = now
        session.add(run)
        kind = "run.rolling_back" if has_rollback else "run.cleaning_up"
        emit(session, event_for(run, kind, now, step, error=step.error))
        log.info("run %s: %s; %s", run.id, why, kind)
        return True
    end_run(session, run, FAILED, now, why)
    return False


def _run_id(run: Run) -> int:
    assert run.id is not None
    return run.id


def _attention(session: Session, run: Run, step: Step, now: datetime, why: str) -> None:
    step.error = redact_text(why)
    session.add(step)
    end_run(session, run, NEEDS_ATTENTION, now, why)
