"""The common step transitions as a few prepared statements, each write fenced by its owner.

Most steps of a run are the plain case: the step at the cursor is pending, nothing was
cancelled or failed, nothing waits for a decision or a retry; it starts, succeeds, and the run
goes on. :mod:`incidentbot.ledger.transitions` handles every case with the ORM; for the plain
one it calls here, where a transition is one or two statements built once per process:

- the fence is one ``UPDATE ledger_run ... WHERE id AND owner AND status = running AND lease
  unexpired ... RETURNING`` the database time it used (the clock is read inside it): no row
  means the lease is lost and nothing is written;
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

from sqlalchemy import Interval, and_, bindparam, func, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session

from incidentbot.db import UTCDateTime
from incidentbot.ledger.actions import ActionRegistry
from incidentbot.ledger.events import LedgerEvent, emit
from incidentbot.ledger.models import RUNNING, STEP_PENDING, STEP_STARTED, STEP_SUCCEEDED, Run, Step
from incidentbot.ledger.spec import StepSpec

_run = Run.__table__  # type: ignore[attr-defined]
_step = Step.__table__  # type: ignore[attr-defined]


def _clock(dialect: str, ahead: bool = False) -> Any:
    """The database clock inside a statement (one value per statement), optionally a lease
    ahead: so the fence needs no statement of its own to read the time."""
    if dialect == "postgresql":
        now = func.statement_timestamp()
        return now + bindparam("b_lease", type_=Interval()) if ahead else now
    # SQLite: 'now' is fixed for the statement; the format is the one datetimes are stored in.
    modifiers = ("now", bindparam("b_ahead")) if ahead else ("now",)
    return func.strftime("%Y-%m-%d %H:%M:%f000", *modifiers)


def _fenced_update(dialect: str, **values: Any) -> Any:
    """``UPDATE ledger_run`` matching only while ``owner`` holds an unexpired lease, extending
    it and returning the database time it used (no row: the lease is lost)."""
    return (
        update(_run)
        .where(
            _run.c.id == bindparam("b_run_id"),
            _run.c.owner == bindparam("b_owner"),
            _run.c.status == RUNNING,
            _run.c.lease_expires_at > _clock(dialect),
        )
        .values(lease_expires_at=_clock(dialect, ahead=True), updated_at=_clock(dialect), **values)
        .returning(_run.c.updated_at)
    )


_DIALECTS = ("sqlite", "postgresql")
# Extend the lease: the fence of every worker write.
_FENCE = {d: _fenced_update(d) for d in _DIALECTS}
# A success that is not the run's last step: the fence also moves the cursor past it.
_ADVANCE = {d: _fenced_update(d, cursor=bindparam("b_cursor")) for d in _DIALECTS}

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


def _lease(conn: Connection, lease: float) -> dict[str, Any]:
    if conn.dialect.name == "postgresql":
        return {"b_lease": timedelta(seconds=lease)}
    return {"b_ahead": f"+{lease:.3f} seconds"}


def fence(session: Session, run_id: int, owner: str, lease: float) -> datetime | None:
    """Extend ``owner``'s lease on the run and return the database time; None if it no longer
    holds the run (nothing written)."""
    conn = _conn(session)
    params = {"b_run_id": run_id, "b_owner": owner, **_lease(conn, lease)}
    return conn.execute(_FENCE[conn.dialect.name], params).scalar_one_or_none()


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
    params = {"b_run_id": run_id, "b_owner": owner, "b_cursor": index + 1, **_lease(conn, lease)}
    now = conn.execute(_ADVANCE[conn.dialect.name], params).scalar_one_or_none()
    if now is None:
        return None
    conn.execute(_SUCCEED, {"b_run_id": run_id, "b_idx": index, "b_output": output, "at": now})
    return now


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
