"""Starting a run that takes no target lock, with two Core statements.

Every declare and every change of an incident queues such runs (its channel, its header and
digest refresh) while Slack waits for the answer, in the change's own transaction. So: no ORM
flush, no savepoint, no lookup of the key first and no statement to read the clock. The run row
is inserted unless its key is taken (``ON CONFLICT DO NOTHING``, on SQLite and PostgreSQL alike:
a racing start of the same key waits for the other to commit, then finds its row), with its
times from the database clock inside that ``INSERT`` (returned with its id), then its step rows
in one ``executemany``. Runs with a target lock go the ORM way in :func:`service.start_run`.

:func:`insert_many` starts several runs of one subject (a declare's channel and announcement;
on PostgreSQL the declare's own statement writes those, see :mod:`.folded`) with the same two
statements: SQLAlchemy sends the ``executemany`` of the run rows as one
multi-row ``INSERT ... RETURNING``, then every run's steps in one ``executemany``; no ORM
instance is built.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session

from incidentbot.db import UTCDateTime
from incidentbot.ledger.fenced import clock
from incidentbot.ledger.models import PENDING, STEP_PENDING, Run, Step
from incidentbot.ledger.redact import redact
from incidentbot.ledger.spec import StepSpec, snapshot

RUNS = Run.__table__  # type: ignore[attr-defined]
STEPS = Step.__table__  # type: ignore[attr-defined]
_INSERT_STEPS = STEPS.insert()  # built once: a new one each time costs its cache key


@cache
def _insert_run(dialect: str) -> Any:
    """The run's ``INSERT``, built once per back end: created and updated on the database
    clock, ``wake_at`` kept only if it is ahead of it; returns the id and that time."""
    now = clock(dialect)
    wake = bindparam("b_wake", type_=UTCDateTime())
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(RUNS).values(
        created_at=now,
        updated_at=now,
        wake_at=case((wake > now, wake), else_=None),
    )
    return stmt.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(
        RUNS.c.id, RUNS.c.created_at, RUNS.c.wake_at
    )


@cache
def _insert_runs(dialect: str) -> Any:
    """:func:`_insert_run` also returning the key: which of several rows went in."""
    return _insert_run(dialect).returning(RUNS.c.idempotency_key)


def _row(kind: str, key: str, steps: list[StepSpec], actor: str, incident_id: int | None) -> dict:
    return {
        "kind": kind,
        "idempotency_key": key,
        "spec": snapshot(steps),
        "status": PENDING,
        "cursor": 0,
        "incident_id": incident_id,
        "created_by": actor,
        "takeovers": 0,
    }


def _step_rows(run_id: int, steps: list[StepSpec]) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run_id,
            "idx": i,
            "name": step.name,
            "action": step.action,
            "status": STEP_PENDING,
            "attempts": 0,
            "idempotent": bool(step.idempotent),
            "input": redact(step.input),
        }
        for i, step in enumerate(steps)
    ]


def insert_many(
    session: Session,
    runs: list[tuple[str, str, list[StepSpec]]],
    actor: str,
    incident_id: int | None,
) -> dict[str, tuple[int, datetime]]:
    """Insert the runs ``(kind, key, steps)`` whose keys are free, and their steps: their keys'
    (id, creation time). A key already taken is left out (its run is not touched)."""
    conn = session.connection()
    stmt = _insert_runs(conn.dialect.name)
    params = [
        {**_row(kind, key, steps, actor, incident_id), "b_wake": None} for kind, key, steps in runs
    ]
    started = {key: (run_id, now) for run_id, now, _wake, key in conn.execute(stmt, params)}
    step_rows = [
        row
        for _kind, key, steps in runs
        if key in started
        for row in _step_rows(started[key][0], steps)
    ]
    if step_rows:
        conn.execute(_INSERT_STEPS, step_rows)
    return started


def insert(
    session: Session,
    kind: str,
    key: str,
    steps: list[StepSpec],
    actor: str,
    incident_id: int | None,
    wake_at: datetime | None = None,
) -> Run | None:
    """The new run (in ``session``, as inserted), or None when ``key`` already names a run.
    ``wake_at`` is kept if it is ahead of the database clock."""
    values: dict[str, Any] = _row(kind, key, steps, actor, incident_id)
    conn = session.connection()
    row = conn.execute(_insert_run(conn.dialect.name), {**values, "b_wake": wake_at}).first()
    if row is None:
        return None
    run_id, now, wake = row
    conn.execute(_INSERT_STEPS, _step_rows(run_id, steps))
    run = Run(id=run_id, created_at=now, updated_at=now, wake_at=wake, **values)
    make_transient_to_detached(run)
    session.add(run)  # persistent as inserted, without reading it back
    return run
