"""One commit between two steps: step N's success recorded and step N+1 marked started together;
and one commit for a run's claim and its first step's start.

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

The claim of a run is folded into its first step's start the same way (:func:`start_first`):
the worker claims the run and, when the step at its cursor is idempotent and plain, marks it
started in the claim's transaction (on PostgreSQL in the claim's own statement), so a
one-step run costs two commits instead of three. The
claim holds the run as the fence would (owner and lease set in that transaction, the row
locked on PostgreSQL), so the step's ``prepare`` reads and writes as in a start of its own. A
crash after that commit finds the step ``started``, its action never begun: being idempotent,
it is run again. Before a non-idempotent step (or a park, a cancelled run, a step left
started by a worker that died) the claim commits alone, so a crash between the claim and the
start leaves the step pending; so does it while the process answers Slack or the worker stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from incidentbot.db import transaction
from incidentbot.ledger import fenced
from incidentbot.ledger.actions import ActionRegistry, StepContext
from incidentbot.ledger.attempts import Attempt, Succeeded, attempt_of, recorded_output
from incidentbot.ledger.leases import claim, claim_next
from incidentbot.ledger.models import Run
from incidentbot.ledger.service import LeaseLost
from incidentbot.ledger.spec import StepSpec, steps_of

log = logging.getLogger("incidentbot.ledger.worker")

Started = tuple[Attempt, StepContext]  # a step marked started, with its action's context


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


def start_first(
    session: Session, run: Run, specs: list[StepSpec], owner: str, actions: ActionRegistry
) -> Attempt | None:
    """In the transaction that claimed ``run`` (for ``owner``, not committed yet): mark the
    step at its cursor started if it is idempotent and its case is plain (one conditional
    ``UPDATE`` of the step, no read: the claim returned the run's row), at the claim's time.
    Returns that step's attempt; None if none was started (nothing written: the claim commits
    alone and the worker begins the step in a transaction of its own)."""
    assert run.id is not None
    found = fenced.start_plain(
        session.connection(), run.id, run, specs, actions, idempotent_only=True
    )
    if found is None:
        return None
    fenced.step_event(session, "step.started", run.id, run.updated_at, found, {"owner": owner})
    return attempt_of(run.id, found, specs, None)


def claim_and_start(
    engine: Engine,
    owner: str,
    lease: float,
    actions: ActionRegistry,
    prepare: Callable[[Any, Attempt], StepContext],
    *,
    only_run: int | None,
    may_start: Callable[[], bool],
) -> tuple[int, dict[int, list[StepSpec]], Started | None] | None:
    """Claim the oldest due run (``only_run``: that one) and, if ``may_start()`` says so
    (not while the process answers Slack or the worker stops), start its first step in the
    same commit (:func:`start_first`; on PostgreSQL in the claim's own statement, see
    :func:`incidentbot.ledger.leases.claim`), its ``prepare`` read in it. Returns the run's
    id, its parsed spec and that step if one was started; None if no run was due."""
    run_id: int | None = None
    specs: dict[int, list[StepSpec]] = {}
    try:
        with transaction(engine) as s:
            start = may_start()
            run, started, tried = claim(
                s, owner, lease, run_id=only_run, start_with=actions if start else None
            )
            if run is None:
                return None
            assert run.id is not None
            run_id, first, attempt = run.id, None, None
            with suppress(ValueError):  # written by a newer build: begin_step says so
                specs[run_id] = steps_of(run.spec)
            if started is not None and run_id not in specs:  # one this build cannot read:
                raise ValueError(f"run {run_id}: its spec cannot be read here")  # undone
            if started is not None:  # in the claim's statement
                attempt = attempt_of(run_id, started, specs[run_id], None)
                fenced.step_event(s, "step.started", run_id, run.updated_at, started,
                                  {"owner": owner})  # fmt: skip
            elif start and not tried and run_id in specs:
                attempt = start_first(s, run, specs[run_id], owner, actions)
            if attempt is not None:
                first = attempt, prepare(s, attempt)
    except Exception:
        if run_id is None:
            raise  # the claim itself failed: nothing to fall back on
        # Nothing of it committed (or, if the commit's answer was lost, all of it: the run is
        # then held on a live lease and taken over once that expires; its step, idempotent,
        # is run again). The run is claimed alone; its step begins in a commit of its own.
        log.warning("run %s: claiming it with the start of its first step failed; "
                    "claiming it alone", run_id, exc_info=True)  # fmt: skip
        with transaction(engine) as s:
            if claim_next(s, owner, lease, run_id=run_id) is None:
                return None
        return run_id, specs, None
    return run_id, specs, first
