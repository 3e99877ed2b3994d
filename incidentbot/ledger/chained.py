"""One commit between two steps: step N's success recorded and step N+1 marked started together.

A step is marked started and committed before its action runs, and its outcome is committed
when the action returns: two commits a step. When step N succeeded, is not the run's last and
the step after it is a plain idempotent one (see :mod:`incidentbot.ledger.fenced`), the worker
records N's success and marks N+1 started in one transaction, so a run of many steps costs one
commit a step. Nothing waits on N's outcome before that commit, and N+1's action still runs
only after it.

Only an idempotent next step is started this way. A crash after the shared commit finds N+1
``started`` though its action never began; an idempotent step is then simply run again, but a
non-idempotent one would stop the run for a person. So before a non-idempotent step, and in
every case that is not plain (a park, a cancel, a retry, a failure, the run's end), the worker
keeps the clean point between the two commits: it records the outcome alone
(:func:`incidentbot.ledger.transitions.finish_step`) and begins the next step in a transaction
of its own.
"""

from __future__ import annotations

from sqlmodel import Session

from incidentbot.ledger import fenced
from incidentbot.ledger.actions import ActionRegistry
from incidentbot.ledger.attempts import Attempt, Succeeded, attempt_of, recorded_output
from incidentbot.ledger.service import LeaseLost
from incidentbot.ledger.spec import StepSpec


def chainable(attempt: Attempt, specs: list[StepSpec], actions: ActionRegistry) -> bool:
    """Whether ``attempt``'s success may share its commit with the next step's start: it is
    not the run's last step (its record then moves the cursor and writes nothing else,
    :func:`incidentbot.ledger.fenced.advance`), and the step after it is idempotent and plain
    as far as its spec says. (Whether that step really starts is decided on the rows, in the
    statement: :func:`incidentbot.ledger.fenced.advance_and_start`.)"""
    if attempt.last:
        return False
    following = specs[attempt.index + 1]
    return bool(following.idempotent) and fenced.plain(following, actions)


def advance_and_start_next(
    session: Session,
    attempt: Attempt,
    outcome: Succeeded,
    owner: str,
    lease: float,
    specs: list[StepSpec],
    actions: ActionRegistry,
) -> Attempt | None:
    """Record ``attempt``'s success (see :func:`chainable`) and, if the step after it is
    plain and idempotent, mark that step started, in the caller's transaction. Returns that
    step's attempt; None if none was started (the success is recorded all the same: the
    caller commits and begins the next step in a transaction of its own). :class:`LeaseLost`
    if the worker no longer holds the run (nothing written)."""
    run_id, output = attempt.run_id, recorded_output(outcome)
    now, following = fenced.advance_and_start(
        session, run_id, owner, lease, attempt.index, output, specs, actions
    )
    if now is None:
        raise LeaseLost(run_id, owner)
    done = fenced.found_of(attempt)
    fenced.step_event(session, "step.succeeded", run_id, now, done, {"output": output})
    if following is None:
        return None
    fenced.step_event(session, "step.started", run_id, now, following, {"owner": owner})
    return attempt_of(run_id, following, specs, None)
