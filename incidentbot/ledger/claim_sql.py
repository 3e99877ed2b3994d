"""The claim's statements, built once per process (:mod:`incidentbot.ledger.leases` runs them):
the one-statement claim of the oldest due run when it is pending and no worker held it, on
PostgreSQL also with the start of the step at its cursor, and the test for a due run that only
the general path takes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ARRAY,
    Interval,
    String,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    exists,
    func,
    or_,
    select,
    true,
    update,
)

from incidentbot.ledger import fenced_sql as fenced
from incidentbot.ledger.models import (
    PARKED,
    PENDING,
    RUNNING,
    STEP_PENDING,
    STEP_STARTED,
    Run,
    Step,
)
from incidentbot.ledger.spec import SPEC_VERSION

_run = Run.__table__  # type: ignore[attr-defined]
_step = Step.__table__  # type: ignore[attr-defined]


def due(dialect: str, one_run: bool) -> Any:
    """Which runs are due, on the database clock read inside the statement."""
    now = fenced.clock(dialect)
    due = or_(
        and_(_run.c.status == PENDING, or_(_run.c.wake_at.is_(None), _run.c.wake_at <= now)),
        and_(_run.c.status == RUNNING, _run.c.lease_expires_at <= now),
        and_(_run.c.status == PARKED, _run.c.wake_at <= now),
    )
    return and_(due, _run.c.id == bindparam("b_only")) if one_run else due


def _claim_statement(dialect: str, one_run: bool) -> Any:
    """The one-statement claim of the oldest due run when it is pending and unowned (see the
    module docstring); no row otherwise."""
    is_due = due(dialect, one_run)
    oldest = (
        select(_run.c.id)
        .where(is_due)
        .order_by(_run.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    if dialect == "postgresql":  # evaluated for the row once it is locked
        held = func.clock_timestamp()
        expires = func.clock_timestamp() + bindparam("b_lease", type_=Interval())
        # Each clock_timestamp() is read on its own: a start read after the update time
        # would be later than it. The statement's time is never later.
        first = func.statement_timestamp()
    else:  # under the write lock: the statement's 'now' is the time
        held = first = fenced.clock(dialect)
        expires = fenced.clock(dialect, ahead=True)
    return (
        update(_run)
        .where(_run.c.id == oldest, _run.c.status == PENDING, _run.c.owner.is_(None))
        .values(
            status=RUNNING,
            owner=bindparam("b_owner"),
            lease_expires_at=expires,
            started_at=func.coalesce(_run.c.started_at, first),
            updated_at=held,
            wake_at=None,
        )
        .returning(*_run.c)
    )


CLAIM = {
    (dialect, one_run): _claim_statement(dialect, one_run)
    for dialect in ("sqlite", "postgresql")
    for one_run in (False, True)
}


def _claim_and_start_statement(one_run: bool) -> Any:
    """PostgreSQL: the one-statement claim in a ``WITH``, and the start of the step at the
    claimed run's cursor, only if the run has no error, failed step or cancel request, its
    spec is of this build's version and says no park and no rollback for that step, and the
    step is pending, undecided, due, idempotent and one of ``b_actions`` (the worker's
    actions): the checks :func:`incidentbot.ledger.fenced.start_plain` makes. One row: the
    claimed run's columns and the started step's (``s_*``, NULL if none was started); no
    row: nothing was claimed."""
    claimed = _claim_statement("postgresql", one_run).cte("claimed")

    def of_step(key: str) -> Any:
        path = ("steps", cast(claimed.c.cursor, Text), key)
        return func.json_extract_path_text(claimed.c.spec, *path)

    at = select(claimed.c.updated_at).scalar_subquery()
    plain = select(claimed.c.id).where(
        claimed.c.error.is_(None),
        claimed.c.failed_step.is_(None),
        claimed.c.cancel_requested_at.is_(None),
        func.json_extract_path_text(claimed.c.spec, "version") == str(SPEC_VERSION),
        of_step("park").is_(None),
        of_step("rollback_for").is_(None),
    )
    started = (
        update(_step)
        .where(
            _step.c.run_id == select(claimed.c.id).scalar_subquery(),
            _step.c.idx == select(claimed.c.cursor).scalar_subquery(),
            exists(plain),
            _step.c.status == STEP_PENDING,
            _step.c.decision.is_(None),
            or_(_step.c.next_attempt_at.is_(None), _step.c.next_attempt_at <= at),
            _step.c.idempotent.is_(True),
            _step.c.action == any_(bindparam("b_actions", type_=ARRAY(String()))),
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
        *claimed.c,
        started.c.name.label("s_name"),
        started.c.attempts.label("s_attempts"),
        started.c.idempotent.label("s_idempotent"),
    ).select_from(claimed.outerjoin(started, true()))


CLAIM_AND_START = {one_run: _claim_and_start_statement(one_run) for one_run in (False, True)}


# A due run that the one-statement claim does not take (a lease to take over, a parked run
# past its deadline, a pending run that still names an owner): only then the general path.
OTHER_DUE = {
    (dialect, one_run): select(_run.c.id)
    .where(
        due(dialect, one_run),
        or_(_run.c.status != PENDING, _run.c.owner.is_not(None)),
    )
    .limit(1)
    for dialect in ("sqlite", "postgresql")
    for one_run in (False, True)
}


# Whether any run is due at all: read before a claim that is likely to find nothing (a worker's
# poll, or its claim after a run when no wake-up was waiting), outside any write transaction.
ANY_DUE = {
    (dialect, one_run): select(_run.c.id).where(due(dialect, one_run)).limit(1)
    for dialect in ("sqlite", "postgresql")
    for one_run in (False, True)
}
