"""The statements of :mod:`incidentbot.ledger.fenced`, built once per process: the fence (an
``UPDATE ledger_run`` matching only while its owner holds an unexpired lease, the database clock
read inside it) and the step updates that go with it; on PostgreSQL each transaction's pair as
one statement (the fence in a ``WITH``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ARRAY,
    Integer,
    Interval,
    and_,
    any_,
    bindparam,
    case,
    exists,
    func,
    null,
    or_,
    select,
    true,
    update,
)

from incidentbot.db import UTCDateTime
from incidentbot.ledger.models import (
    RUNNING,
    STEP_PENDING,
    STEP_STARTED,
    STEP_SUCCEEDED,
    SUCCEEDED,
    Run,
    Step,
)

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


DIALECTS = ("sqlite", "postgresql")
# Extend the lease: the fence of every worker write.
FENCE = {d: _fenced_update(d) for d in DIALECTS}
# A success that is not the run's last step: the fence also moves the cursor past it.
ADVANCE = {d: _fenced_update(d, cursor=bindparam("b_cursor")) for d in DIALECTS}

SUCCEED = (
    update(_step)
    .where(_step.c.run_id == bindparam("b_run_id"), _step.c.idx == bindparam("b_idx"))
    .values(
        status=STEP_SUCCEEDED,
        output=bindparam("b_output", type_=_step.c.output.type),
        error=None,
        finished_at=bindparam("at", type_=UTCDateTime()),
    )
)


def _step_succeeded(fenced: Any, when: Any) -> Any:
    """The ``WITH`` that records the cursor step's success at the fence's time, only if
    ``when`` (a condition on the fence's row) holds."""
    return (
        update(_step)
        .where(_step.c.run_id == bindparam("b_run_id"), _step.c.idx == bindparam("b_idx"), when)
        .values(
            status=STEP_SUCCEEDED,
            output=bindparam("b_output", type_=_step.c.output.type),
            error=None,
            finished_at=select(fenced.c.updated_at).scalar_subquery(),
        )
        .returning(_step.c.idx)
        .cte("succeeded")
    )


def _advance_in_one() -> Any:
    """PostgreSQL: :data:`ADVANCE` and :data:`SUCCEED` as one statement (one round trip):
    the fencing update in a ``WITH``, the step's update only if it matched, at the time it
    used; the result is the fence's (no row: the lease is lost and nothing is written)."""
    fenced = ADVANCE["postgresql"].cte("fenced")
    succeeded = _step_succeeded(fenced, exists(select(fenced.c.updated_at)))
    return select(fenced.c.updated_at).add_cte(succeeded)


ADVANCE_IN_ONE = _advance_in_one()

# Before a step: the fence also returns what decides whether the step at the cursor is plain.
_READ = (
    _run.c.kind,
    _run.c.incident_id,
    _run.c.target,
    _run.c.error,
    _run.c.failed_step,
    _run.c.cancel_requested_at,
    _run.c.cursor,
)
FENCE_READ = {d: _fenced_update(d, *_READ) for d in DIALECTS}
# Between two steps in one commit: the fence moves the cursor past the step that succeeded and
# returns the same, for the start of the step after it (the new cursor).
ADVANCE_READ = {d: _fenced_update(d, *_READ, cursor=bindparam("b_cursor")) for d in DIALECTS}

# Mark the step at the cursor started, only if it is pending, undecided and due: no row means
# it is not the plain case (and nothing was written).
START = (
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
# The same, only for an idempotent step (started in the commit that records the step before it).
START_IDEMPOTENT = START.where(_step.c.idempotent.is_(True))


def _start_in_one() -> Any:
    """PostgreSQL: :data:`FENCE_READ` and :data:`START` as one statement (one round trip).
    The step at the cursor is marked started only if the fence matched, the run has no error,
    failed step or cancel request, the cursor's step is one of ``b_plain`` (the plain steps of
    the spec, worked out by the caller) and the step is pending, undecided and due: the checks
    the two statements and the caller made between them. One row: the fence's values, and the
    started step's (NULL if it was not started); no row: the lease is lost."""
    fenced = FENCE_READ["postgresql"].cte("fenced")
    return _started_of(fenced, _started(fenced, idempotent_only=False))


def _started(fenced: Any, idempotent_only: bool) -> Any:
    """The ``WITH`` that marks the step at the fence's cursor started (see
    :func:`_start_in_one`); with ``idempotent_only``, only an idempotent step."""
    at = select(fenced.c.updated_at).scalar_subquery()
    return (
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
            *([_step.c.idempotent.is_(True)] if idempotent_only else []),
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


def _started_of(fenced: Any, started: Any) -> Any:
    """One row: the fence's values and the started step's (NULL if none was started)."""
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


START_IN_ONE = _start_in_one()


def _advance_and_start_in_one() -> Any:
    """PostgreSQL: step ``b_idx`` succeeded and the idempotent step after it starts, in one
    statement (one round trip): :data:`ADVANCE_READ` in a ``WITH``, the succeeded step's
    update only if it matched (as :func:`_advance_in_one`), and the start of the step at the
    new cursor as :data:`START_IN_ONE` starts it, if it is idempotent (two different step
    rows, each updated once). One row: the fence's values and the started step's (NULL if
    none was started: the success is recorded all the same); no row: the lease is lost and
    nothing is written."""
    fenced = ADVANCE_READ["postgresql"].cte("fenced")
    succeeded = _step_succeeded(fenced, exists(select(fenced.c.updated_at)))
    return _started_of(fenced, _started(fenced, idempotent_only=True)).add_cte(succeeded)


ADVANCE_AND_START_IN_ONE = _advance_and_start_in_one()


# The run's last step succeeded (the fence read said the case is plain): the run ends.
END = (
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


def _finish_in_one() -> Any:
    """PostgreSQL: :func:`finish_last` as one statement (one round trip). The run's row is
    updated once (a row may not be updated twice in one statement): the fence, and, when the
    case is plain (the cursor at the step, no target, error, failed step or cancel request,
    judged on the row as it was), the run's end in the same ``SET``; the step's update in a
    ``WITH`` only if the run ended, at the time the fence used. One row: the fence's values
    with the run's new status (``succeeded``: it ended); no row: the lease is lost."""
    plain = and_(
        _run.c.cursor == bindparam("b_idx"),
        _run.c.target.is_(None),
        _run.c.error.is_(None),
        _run.c.failed_step.is_(None),
        _run.c.cancel_requested_at.is_(None),
    )
    now = clock("postgresql")
    fenced = (
        update(_run)
        .where(
            _run.c.id == bindparam("b_run_id"),
            _run.c.owner == bindparam("b_owner"),
            _run.c.status == RUNNING,
            _run.c.lease_expires_at > now,
        )
        .values(
            status=case((plain, SUCCEEDED), else_=_run.c.status),
            cursor=case((plain, bindparam("b_idx") + 1), else_=_run.c.cursor),
            lease_expires_at=case((plain, null()), else_=clock("postgresql", ahead=True)),
            wake_at=case((plain, null()), else_=_run.c.wake_at),
            finished_at=case((plain, now), else_=_run.c.finished_at),
            updated_at=now,
        )
        .returning(_run.c.updated_at, _run.c.status)
        .cte("fenced")
    )
    ended = exists(select(fenced.c.status).where(fenced.c.status == SUCCEEDED))
    return select(fenced.c.updated_at, fenced.c.status).add_cte(_step_succeeded(fenced, ended))


FINISH_IN_ONE = _finish_in_one()
