"""The common step transitions as a few prepared statements, each write fenced by its owner.

Most steps of a run are the plain case: the step at the cursor is pending, nothing was
cancelled or failed, nothing waits for a decision or a retry; it starts, succeeds, and the run
goes on. :mod:`incidentbot.ledger.transitions` handles every case with the ORM; for the plain
one it calls here, where a transition is one or two statements built once per process:

- the fence is one ``UPDATE ledger_run ... WHERE id AND owner AND status = running AND lease
  unexpired``: a rowcount of 0 means the lease is lost and nothing is written;
- marking a step started reads the run and its cursor step in one ``SELECT`` and updates the
  step row;
- recording a success moves the cursor inside the fencing update and updates the step row.

The guarantees are those of the general path (a step is marked started, committed, before it
runs; its result and the cursor commit together; every write is fenced); only the number of
statements and Python calls per step differs. Anything not plain returns None, and the caller
takes the general path in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session

from incidentbot.db import UTCDateTime
from incidentbot.ledger.actions import ActionRegistry
from incidentbot.ledger.events import LedgerEvent, emit
from incidentbot.ledger.models import RUNNING, STEP_PENDING, STEP_STARTED, STEP_SUCCEEDED, Run, Step
from incidentbot.ledger.spec import StepSpec

_run = Run.__table__  # type: ignore[attr-defined]
_step = Step.__table__  # type: ignore[attr-defined]

_FENCED = and_(
    _run.c.id == bindparam("b_run_id"),
    _run.c.owner == bindparam("b_owner"),
    _run.c.status == RUNNING,
    _run.c.lease_expires_at > bindparam("now", type_=UTCDateTime()),
)

# Extend the lease: the fence of every worker write.
FENCE = (
    update(_run)
    .where(_FENCED)
    .values(
        lease_expires_at=bindparam("until", type_=UTCDateTime()),
        updated_at=bindparam("at", type_=UTCDateTime()),
    )
)

# A success that is not the run's last step: the fence also moves the cursor past it.
_ADVANCE = (
    update(_run)
    .where(_FENCED)
    .values(
        cursor=bindparam("b_cursor"),
        lease_expires_at=bindparam("until", type_=UTCDateTime()),
        updated_at=bindparam("at", type_=UTCDateTime()),
    )
)

_SUCCEED = (
    update(_step)
    .where(_step.c.run_id == bindparam("b_run_id"), _step.c.idx == bindparam("b_idx"))
    .values(
        status=STEP_SUCCEEDED,
        output=bindparam("b_output", type_=_step.c.output.type),
        error=None,
        finished_at=bindparam("at", type_=UTCDateTime()),
    )
)

_AT_CURSOR = (
    select(
        _run.c.kind,
        _run.c.incident_id,
        _run.c.target,
        _run.c.error,
        _run.c.failed_step,
        _run.c.cancel_requested_at,
        _step.c.id,
        _step.c.idx,
        _step.c.name,
        _step.c.status,
        _step.c.attempts,
        _step.c.idempotent,
        _step.c.decision,
        _step.c.next_attempt_at,
    )
    .select_from(_run.join(_step, and_(_step.c.run_id == _run.c.id, _step.c.idx == _run.c.cursor)))
    .where(_run.c.id == bindparam("b_run_id"))
)

_START = (
    update(_step)
    .where(_step.c.id == bindparam("step_id"))
    .values(
        status=STEP_STARTED,
        attempts=bindparam("b_attempts"),
        started_at=bindparam("at", type_=UTCDateTime()),
        finished_at=None,
        next_attempt_at=None,
    )
)


def _conn(session: Session) -> Connection:
    return session.connection()


def fence(session: Session, run_id: int, owner: str, now: datetime, lease: float) -> bool:
    """Extend ``owner``'s lease on the run; False if it no longer holds it (nothing written)."""
    params = {"b_run_id": run_id, "b_owner": owner, "now": now}
    params.update(until=now + timedelta(seconds=lease), at=now)
    return _conn(session).execute(FENCE, params).rowcount == 1


def advance(
    session: Session,
    run_id: int,
    owner: str,
    now: datetime,
    lease: float,
    index: int,
    output: dict[str, Any],
) -> bool:
    """Step ``index`` succeeded and is not the last: fence and move the cursor in one update,
    then record the output. False if the lease is lost (nothing written)."""
    conn = _conn(session)
    params = {"b_run_id": run_id, "b_owner": owner, "now": now, "b_cursor": index + 1}
    params.update(until=now + timedelta(seconds=lease), at=now)
    if conn.execute(_ADVANCE, params).rowcount != 1:
        return False
    conn.execute(_SUCCEED, {"b_run_id": run_id, "b_idx": index, "b_output": output, "at": now})
    return True


def plain_start(
    session: Session, run_id: int, now: datetime, specs: list[StepSpec], actions: ActionRegistry
) -> dict[str, Any] | None:
    """Mark the step at the cursor started if its case is the plain one (see the module);
    returns what the attempt needs, or None for the general path (nothing written).

    Call after the fence, in the same transaction."""
    conn = _conn(session)
    row = conn.execute(_AT_CURSOR, {"b_run_id": run_id}).first()
    if row is None:
        return None
    spec = specs[row.idx] if row.idx < len(specs) else None
    if (
        spec is None
        or row.status != STEP_PENDING
        or row.error is not None
        or row.failed_step is not None
        or row.cancel_requested_at is not None
        or row.decision is not None
        or spec.park is not None
        or spec.rollback_for is not None
        or actions.get(spec.action) is None
        or (row.next_attempt_at is not None and row.next_attempt_at > now)
    ):
        return None
    attempts = row.attempts + 1
    conn.execute(_START, {"step_id": row.id, "b_attempts": attempts, "at": now})
    return {
        "run_kind": row.kind,
        "incident_id": row.incident_id,
        "target": row.target,
        "index": row.idx,
        "name": row.name,
        "idempotent": row.idempotent,
        "attempt": attempts,
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
    emit(
        session,
        LedgerEvent(
            kind=kind,
            run_id=run_id,
            run_kind=found["run_kind"],
            run_status=RUNNING,
            at=now,
            incident_id=found["incident_id"],
            target=found["target"],
            step_index=found["index"],
            step_name=found["name"],
            attempt=found["attempt"],
            data=data,
        ),
    )
