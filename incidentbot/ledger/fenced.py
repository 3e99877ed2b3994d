"""The common step transitions as a few prepared statements, each write fenced by its owner.

Most steps of a run are the plain case: the step at the cursor is pending, nothing was
cancelled or failed, nothing waits for a decision or a retry; it starts, succeeds, and the run
goes on. :mod:`incidentbot.ledger.transitions` handles every case with the ORM; for the plain
one it calls here, where a transition is one or two statements built once per process:

- the fence is one ``UPDATE ledger_run ... WHERE id AND owner AND status = running AND lease
  unexpired ... RETURNING`` the database time it used (the clock is read inside it): no row
  means the lease is lost and nothing is written;
- marking a step started is that fence, which also returns the run's state and cursor, and
  one conditional ``UPDATE`` of the cursor step (pending, undecided, due) returning what the
  attempt needs: no ``SELECT``;
- recording a success moves the cursor inside the fencing update and updates the step row;
- on PostgreSQL each pair is sent as one statement (the fence in a ``WITH``, the step's
  update only if it matched): one round trip per transaction.
- a success followed by an idempotent plain step (:mod:`incidentbot.ledger.chained`): the
  fence moving the cursor and reading the run, the step row, and the next step's start, in
  one transaction (on PostgreSQL one statement: two different step rows, each in a ``WITH``).
- the last step's success, on a run with no target lock, no cancel and no failure behind it,
  is the fence (which reads the run), the run's end and the step row: no ``SELECT``; on
  PostgreSQL one statement (the end folded into the fence's ``SET``, the step in a ``WITH``).

The guarantees are those of the general path (a step is marked started, committed, before it
runs; its result and the cursor commit together; every write is fenced); only the number of
statements and Python calls per step differs. Anything not plain returns None, and the caller
takes the general path in the same transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection
from sqlmodel import Session

from incidentbot.ledger.actions import ActionRegistry
from incidentbot.ledger.attempts import Attempt
from incidentbot.ledger.events import LedgerEvent, emit
from incidentbot.ledger.fenced_sql import (
    ADVANCE,
    ADVANCE_AND_START_IN_ONE,
    ADVANCE_IN_ONE,
    ADVANCE_READ,
    END,
    FENCE,
    FENCE_READ,
    FINISH_IN_ONE,
    START,
    START_IDEMPOTENT,
    START_IN_ONE,
    SUCCEED,
)
from incidentbot.ledger.fenced_sql import clock as clock
from incidentbot.ledger.models import RUNNING, SUCCEEDED
from incidentbot.ledger.spec import StepSpec

log = logging.getLogger("incidentbot.ledger.leases")  # where runs' ends are logged


def _conn(session: Session) -> Connection:
    return session.connection()


def lease_params(dialect: str, lease: float) -> dict[str, Any]:
    """The bound values of a clock a lease ahead (:func:`clock` with ``ahead``)."""
    if dialect == "postgresql":
        return {"b_lease": timedelta(seconds=lease)}
    return {"b_ahead": f"+{lease:.3f} seconds"}


def fence(session: Session, run_id: int, owner: str, lease: float) -> datetime | None:
    """Extend ``owner``'s lease on the run and return the database time; None if it no longer
    holds the run (nothing written)."""
    conn = _conn(session)
    params = {"b_run_id": run_id, "b_owner": owner, **lease_params(conn.dialect.name, lease)}
    return conn.execute(FENCE[conn.dialect.name], params).scalar_one_or_none()


def advance(
    session: Session,
    run_id: int,
    owner: str,
    lease: float,
    index: int,
    output: dict[str, Any],
) -> datetime | None:
    """Step ``index`` succeeded and is not the last: fence and move the cursor in one update,
    then record the output. Returns the database time; None if the lease is lost (nothing
    written)."""
    conn = _conn(session)
    params = {
        "b_run_id": run_id,
        "b_owner": owner,
        "b_cursor": index + 1,
        **lease_params(conn.dialect.name, lease),
    }
    if conn.dialect.name == "postgresql":
        params.update(b_idx=index, b_output=output)
        return conn.execute(ADVANCE_IN_ONE, params).scalar_one_or_none()
    now = conn.execute(ADVANCE[conn.dialect.name], params).scalar_one_or_none()
    if now is None:
        return None
    conn.execute(SUCCEED, {"b_run_id": run_id, "b_idx": index, "b_output": output, "at": now})
    return now


def finish_last(
    session: Session, run_id: int, owner: str, lease: float, index: int, output: dict[str, Any]
) -> tuple[datetime | None, Any]:
    """The last step (``index``) succeeded: fence, and if the run is in the plain case (no
    target lock to release, no cancel, no failure behind it) end it succeeded and record the
    output: three statements. Returns (database time, the fence's row); the time is None if
    the lease is lost (nothing written), the row None for the general path (only the fence
    written: the caller goes on in the same transaction)."""
    conn = _conn(session)
    params = {"b_run_id": run_id, "b_owner": owner}
    params.update(lease_params(conn.dialect.name, lease))
    if conn.dialect.name == "postgresql":
        params.update(b_idx=index, b_output=output)
        row = conn.execute(FINISH_IN_ONE, params).first()
        if row is None:
            return None, None
        return row.updated_at, (row if row.status == SUCCEEDED else None)
    run = conn.execute(FENCE_READ[conn.dialect.name], params).first()
    if run is None:
        return None, None
    now: datetime = run.updated_at
    if (
        run.cursor != index
        or run.target is not None
        or run.error is not None
        or run.failed_step is not None
        or run.cancel_requested_at is not None
    ):
        return now, None
    conn.execute(END, {"b_run_id": run_id, "b_owner": owner, "b_cursor": index + 1, "at": now})
    conn.execute(SUCCEED, {"b_run_id": run_id, "b_idx": index, "b_output": output, "at": now})
    return now, run


def fence_and_start(
    session: Session,
    run_id: int,
    owner: str,
    lease: float,
    specs: list[StepSpec],
    actions: ActionRegistry,
) -> tuple[datetime | None, dict[str, Any] | None]:
    """Fence, and mark the step at the cursor started if its case is the plain one (see the
    module): two statements. Returns (database time, what the attempt needs); the time is None
    if the lease is lost (nothing written), the second None for the general path (only the
    fence written: the caller goes on in the same transaction)."""
    conn = _conn(session)
    params = {"b_run_id": run_id, "b_owner": owner, **lease_params(conn.dialect.name, lease)}
    if conn.dialect.name == "postgresql":
        ok = [i for i, spec in enumerate(specs) if plain(spec, actions)]
        row = conn.execute(START_IN_ONE, {**params, "b_plain": ok}).first()
        return (None, None) if row is None else (row.updated_at, _found(row))
    run = conn.execute(FENCE_READ[conn.dialect.name], params).first()
    if run is None:
        return None, None
    return run.updated_at, start_plain(conn, run_id, run, specs, actions, idempotent_only=False)


def advance_and_start(
    session: Session,
    run_id: int,
    owner: str,
    lease: float,
    index: int,
    output: dict[str, Any],
    specs: list[StepSpec],
    actions: ActionRegistry,
) -> tuple[datetime | None, dict[str, Any] | None]:
    """Step ``index`` succeeded and is not the last: :func:`advance`, then mark the step at
    the new cursor started if its case is plain and it is idempotent (as
    :func:`fence_and_start` would, the step idempotent), in one transaction: three statements
    (one fence), on PostgreSQL one. Returns (database time, what the attempt needs); the time
    is None if the lease is lost (nothing written), the second None if no step was started
    (the success is recorded all the same)."""
    conn = _conn(session)
    params = {
        "b_run_id": run_id,
        "b_owner": owner,
        "b_cursor": index + 1,
        "b_idx": index,
        "b_output": output,
        **lease_params(conn.dialect.name, lease),
    }
    if conn.dialect.name == "postgresql":
        ok = [i for i, spec in enumerate(specs) if spec.idempotent and plain(spec, actions)]
        row = conn.execute(ADVANCE_AND_START_IN_ONE, {**params, "b_plain": ok}).first()
        return (None, None) if row is None else (row.updated_at, _found(row))
    run = conn.execute(ADVANCE_READ[conn.dialect.name], params).first()
    if run is None:
        return None, None
    now: datetime = run.updated_at
    conn.execute(SUCCEED, {"b_run_id": run_id, "b_idx": index, "b_output": output, "at": now})
    return now, start_plain(conn, run_id, run, specs, actions, idempotent_only=True)


def start_plain(
    conn: Connection,
    run_id: int,
    run: Any,
    specs: list[StepSpec],
    actions: ActionRegistry,
    idempotent_only: bool,
) -> dict[str, Any] | None:
    """After the fence that read ``run`` (SQLite), or the claim that returned it (either back
    end): mark the step at its cursor started if the case is plain; what the attempt needs, or
    None (nothing written)."""
    now = run.updated_at
    spec = specs[run.cursor] if run.cursor < len(specs) else None
    if (
        spec is None
        or run.error is not None
        or run.failed_step is not None
        or run.cancel_requested_at is not None
        or not plain(spec, actions)
        or (idempotent_only and not spec.idempotent)
    ):
        return None
    start = START_IDEMPOTENT if idempotent_only else START
    step = conn.execute(start, {"b_run_id": run_id, "b_idx": run.cursor, "at": now}).first()
    if step is None:
        return None
    return {
        "run_kind": run.kind,
        "incident_id": run.incident_id,
        "target": run.target,
        "index": run.cursor,
        "name": step.name,
        "idempotent": step.idempotent,
        "attempt": step.attempts,
    }


def plain(spec: StepSpec, actions: ActionRegistry) -> bool:
    """A step whose start is the plain case as far as its spec says (see the module)."""
    return spec.park is None and spec.rollback_for is None and actions.get(spec.action) is not None


def _found(row: Any) -> dict[str, Any] | None:
    """What the attempt needs, from a one-statement start's row (None: nothing started)."""
    if row.name is None:
        return None
    return {
        "run_kind": row.kind,
        "incident_id": row.incident_id,
        "target": row.target,
        "index": row.cursor,
        "name": row.name,
        "idempotent": row.idempotent,
        "attempt": row.attempts,
    }


def step_event(
    session: Session,
    kind: str,
    run_id: int,
    now: datetime,
    found: dict[str, Any],
    data: dict[str, Any],
) -> None:
    """Queue the transition's event, as :func:`incidentbot.ledger.events.event_for` would."""
    step = {"step_index": found["index"], "step_name": found["name"], "attempt": found["attempt"]}
    run_event(session, kind, run_id, RUNNING, now, found, **step, data=data)


def run_event(
    session: Session,
    kind: str,
    run_id: int,
    status: str,
    now: datetime,
    found: dict[str, Any],
    **step: Any,
) -> None:
    """Queue a run's event, as :func:`incidentbot.ledger.events.event_for` would (``step``:
    the step's fields of a step's event)."""
    emit(
        session,
        LedgerEvent(
            kind=kind,
            run_id=run_id,
            run_kind=found["run_kind"],
            run_status=status,
            at=now,
            incident_id=found["incident_id"],
            target=found["target"],
            **step,
        ),
    )


def found_of(attempt: Attempt) -> dict[str, Any]:
    """What the events of ``attempt``'s step say of it and its run."""
    return {
        "run_kind": attempt.run_kind,
        "incident_id": attempt.incident_id,
        "target": attempt.target,
        "index": attempt.index,
        "name": attempt.name,
        "attempt": attempt.attempt,
    }


def ended(session: Session, attempt: Attempt, now: datetime, output: dict[str, Any]) -> None:
    """The events of a last step that succeeded and of its run's end (:func:`finish_last`),
    as the general path emits them."""
    found = found_of(attempt)
    step_event(session, "step.succeeded", attempt.run_id, now, found, {"output": output})
    run_event(session, "run.succeeded", attempt.run_id, SUCCEEDED, now, found)
    log.info("run %s %s", attempt.run_id, SUCCEEDED)
