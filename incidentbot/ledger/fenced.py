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
- the last step's success, on a run with no target lock, no cancel and no failure behind it,
  is the fence (which reads the run), the run's end and the step row: no ``SELECT``.

The guarantees are those of the general path (a step is marked started, committed, before it
runs; its result and the cursor commit together; every write is fenced); only the number of
statements and Python calls per step differs. Anything not plain returns None, and the caller
takes the general path in the same transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    Integer,
    Interval,
    any_,
    bindparam,
    exists,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlmodel import Session

from incidentbot.db import UTCDateTime
from incidentbot.ledger.actions import ActionRegistry
from incidentbot.ledger.attempts import Attempt
from incidentbot.ledger.events import LedgerEvent, emit
from incidentbot.ledger.models import (
    RUNNING,
    STEP_PENDING,
    STEP_STARTED,
    STEP_SUCCEEDED,
    SUCCEEDED,
    Run,
    Step,
)
from incidentbot.ledger.spec import StepSpec

log = logging.getLogger("incidentbot.ledger.leases")  # where runs' ends are logged

_run = Run.__table__  # type: ignore[attr-defined]
_step = Step.__table__  # type: ignore[attr-defined]


def clock(dialect: str, ahead: bool = False) -> Any:
    """The database clock inside a statement (one value per statement), optionally a lease
    ahead: so the fence needs no statement of its own to read the time."""
    if dialect == "postgresql":
        now = func.statement_timestamp()
        return now + bindparam("b_lease", type_=Interval()) if ahead else now
    # SQLite: 'now' is fixed for the statement; the format is the one datetimes are stored in.
    modifiers = ("now", bindparam("b_ahead")) if ahead else ("now",)
    return func.strftime("%Y-%m-%d %H:%M:%f000", *modifiers)


def _fenced_update(dialect: str, *returning: Any, **values: Any) -> Any:
    """``UPDATE ledger_run`` matching only while ``owner`` holds an unexpired lease, extending
    it and returning the database time it used (no row: the lease is lost), then
    ``returning``."""
    return (
        update(_run)
        .where(
            _run.c.id == bindparam("b_run_id"),
            _run.c.owner == bindparam("b_owner"),
            _run.c.status == RUNNING,
            _run.c.lease_expires_at > clock(dialect),
        )
        .values(lease_expires_at=clock(dialect, ahead=True), updated_at=clock(dialect), **values)
        .returning(_run.c.updated_at, *returning)
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


def _advance_in_one() -> Any:
    """PostgreSQL: :data:`_ADVANCE` and :data:`_SUCCEED` as one statement (one round trip):
    the fencing update in a ``WITH``, the step's update only if it matched, at the time it
    used; the result is the fence's (no row: the lease is lost and nothing is written)."""
    fenced = _ADVANCE["postgresql"].cte("fenced")
    succeeded = (
        update(_step)
        .where(
            _step.c.run_id == bindparam("b_run_id"),
            _step.c.idx == bindparam("b_idx"),
            exists(select(fenced.c.updated_at)),
        )
        .values(
            status=STEP_SUCCEEDED,
            output=bindparam("b_output", type_=_step.c.output.type),
            error=None,
            finished_at=select(fenced.c.updated_at).scalar_subquery(),
        )
        .returning(_step.c.idx)
        .cte("succeeded")
    )
    return select(fenced.c.updated_at).add_cte(succeeded)


_ADVANCE_IN_ONE = _advance_in_one()

# Before a step: the fence also returns what decides whether the step at the cursor is plain.
_FENCE_READ = {
    d: _fenced_update(
        d,
        _run.c.kind,
        _run.c.incident_id,
        _run.c.target,
        _run.c.error,
        _run.c.failed_step,
        _run.c.cancel_requested_at,
        _run.c.cursor,
    )
    for d in _DIALECTS
}

# Mark the step at the cursor started, only if it is pending, undecided and due: no row means
# it is not the plain case (and nothing was written).
_START = (
    update(_step)
    .where(
        _step.c.run_id == bindparam("b_run_id"),
        _step.c.idx == bindparam("b_idx"),
        _step.c.status == STEP_PENDING,
        _step.c.decision.is_(None),
        or_(
            _step.c.next_attempt_at.is_(None),
            _step.c.next_attempt_at <= bindparam("at", type_=UTCDateTime()),
        ),
    )
    .values(
        status=STEP_STARTED,
        attempts=_step.c.attempts + 1,
        started_at=bindparam("at", type_=UTCDateTime()),
        finished_at=None,
        next_attempt_at=None,
    )
    .returning(_step.c.name, _step.c.attempts, _step.c.idempotent)
)


def _start_in_one() -> Any:
    """PostgreSQL: :data:`_FENCE_READ` and :data:`_START` as one statement (one round trip).
    The step at the cursor is marked started only if the fence matched, the run has no error,
    failed step or cancel request, the cursor's step is one of ``b_plain`` (the plain steps of
    the spec, worked out by the caller) and the step is pending, undecided and due: the checks
    the two statements and the caller made between them. One row: the fence's values, and the
    started step's (NULL if it was not started); no row: the lease is lost."""
    fenced = _FENCE_READ["postgresql"].cte("fenced")
    at = select(fenced.c.updated_at).scalar_subquery()
    started = (
        update(_step)
        .where(
            _step.c.run_id == bindparam("b_run_id"),
            _step.c.idx == select(fenced.c.cursor).scalar_subquery(),
            _step.c.idx == any_(bindparam("b_plain", type_=ARRAY(Integer))),
            exists(
                select(fenced.c.cursor).where(
                    fenced.c.error.is_(None),
                    fenced.c.failed_step.is_(None),
                    fenced.c.cancel_requested_at.is_(None),
                )
            ),
            _step.c.status == STEP_PENDING,
            _step.c.decision.is_(None),
            or_(_step.c.next_attempt_at.is_(None), _step.c.next_attempt_at <= at),
        )
        .values(
            status=STEP_STARTED,
            attempts=_step.c.attempts + 1,
            started_at=at,
            finished_at=None,
            next_attempt_at=None,
        )
        .returning(_step.c.name, _step.c.attempts, _step.c.idempotent)
        .cte("started")
    )
    return select(
        fenced.c.updated_at,
        fenced.c.kind,
        fenced.c.incident_id,
        fenced.c.target,
        fenced.c.cursor,
        started.c.name,
        started.c.attempts,
        started.c.idempotent,
    ).select_from(fenced.outerjoin(started, true()))


_START_IN_ONE = _start_in_one()


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
    params = {
        "b_run_id": run_id,
        "b_owner": owner,
        "b_cursor": index + 1,
        **lease_params(conn.dialect.name, lease),
    }
    if conn.dialect.name == "postgresql":
        params.update(b_idx=index, b_output=output)
        return conn.execute(_ADVANCE_IN_ONE, params).scalar_one_or_none()
    now = conn.execute(_ADVANCE[conn.dialect.name], params).scalar_one_or_none()
    if now is None:
        return None
    conn.execute(_SUCCEED, {"b_run_id": run_id, "b_idx": index, "b_output": output, "at": now})
    return now


# The run's last step succeeded (the fence read said the case is plain): the run ends.
_END = (
    update(_run)
    .where(_run.c.id == bindparam("b_run_id"), _run.c.owner == bindparam("b_owner"))
    .values(
        status=SUCCEEDED,
        cursor=bindparam("b_cursor"),
        lease_expires_at=None,
        wake_at=None,
        updated_at=bindparam("at", type_=UTCDateTime()),
        finished_at=bindparam("at", type_=UTCDateTime()),
    )
)


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
    run = conn.execute(_FENCE_READ[conn.dialect.name], params).first()
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
    conn.execute(_END, {"b_run_id": run_id, "b_owner": owner, "b_cursor": index + 1, "at": now})
    conn.execute(_SUCCEED, {"b_run_id": run_id, "b_idx": index, "b_output": output, "at": now})
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
        return _fence_and_start_in_one(conn, params, specs, actions)
    run = conn.execute(_FENCE_READ[conn.dialect.name], params).first()
    if run is None:
        return None, None
    now: datetime = run.updated_at
    spec = specs[run.cursor] if run.cursor < len(specs) else None
    if (
        spec is None
        or run.error is not None
        or run.failed_step is not None
        or run.cancel_requested_at is not None
        or spec.park is not None
        or spec.rollback_for is not None
        or actions.get(spec.action) is None
    ):
        return now, None
    step = conn.execute(_START, {"b_run_id": run_id, "b_idx": run.cursor, "at": now}).first()
    if step is None:
        return now, None
    return now, {
        "run_kind": run.kind,
        "incident_id": run.incident_id,
        "target": run.target,
        "index": run.cursor,
        "name": step.name,
        "idempotent": step.idempotent,
        "attempt": step.attempts,
    }


def _plain(spec: StepSpec, actions: ActionRegistry) -> bool:
    """A step whose start is the plain case as far as its spec says (see the module)."""
    return spec.park is None and spec.rollback_for is None and actions.get(spec.action) is not None


def _fence_and_start_in_one(
    conn: Connection, params: dict[str, Any], specs: list[StepSpec], actions: ActionRegistry
) -> tuple[datetime | None, dict[str, Any] | None]:
    """:func:`fence_and_start` in one statement (PostgreSQL)."""
    plain = [i for i, spec in enumerate(specs) if _plain(spec, actions)]
    row = conn.execute(_START_IN_ONE, {**params, "b_plain": plain}).first()
    if row is None:
        return None, None
    if row.name is None:
        return row.updated_at, None
    return row.updated_at, {
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


def run_event(
    session: Session, kind: str, run_id: int, status: str, now: datetime, found: dict[str, Any]
) -> None:
    """Queue a run's event (no step), as :func:`incidentbot.ledger.events.event_for` would."""
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
