"""Starting, reading, claiming and fencing runs: plain functions over a session.

Every timestamp here comes from the database clock (:func:`incidentbot.db.db_now`), never from
the worker's, so that a worker with a skewed clock can neither steal a live lease nor keep a
dead one. Callers wrap calls in :func:`incidentbot.db.transaction`; events reach subscribers
after that transaction commits. Requests from outside (cancel, decide) are in ``control.py``,
the worker's per-step commits in ``transitions.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from incidentbot.db import db_now
from incidentbot.errors import DomainError, NotFound
from incidentbot.ledger import untargeted
from incidentbot.ledger.actions import ActionRegistry, registry
from incidentbot.ledger.events import LedgerEvent, emit, event_for
from incidentbot.ledger.models import (
    PENDING,
    STEP_PENDING,
    Run,
    Step,
    TargetLock,
)
from incidentbot.ledger.redact import redact
from incidentbot.ledger.spec import StepSpec, parse_steps, snapshot
from incidentbot.ledger.subjects import describe

log = logging.getLogger(__name__)


class LockHeld(DomainError):
    """The target is locked by another run; the message names it and its incident."""

    def __init__(self, message: str, *, target: str, run_id: int):
        super().__init__(message)
        self.target = target
        self.run_id = run_id


class RunNotFound(NotFound):
    pass


class LeaseLost(Exception):
    """This worker no longer owns the run (lease expired or taken over): stop touching it."""

    def __init__(self, run_id: int, owner: str):
        super().__init__(f"run {run_id} is no longer held by {owner}")
        self.run_id = run_id
        self.owner = owner


# -- reading -----------------------------------------------------------------------------------


def get_run(
    session: Session, run_id: int, *, for_update: bool = False, with_spec: bool = True
) -> Run:
    """The run, fresh from the database. Workers that cached the parsed spec skip loading it
    (``with_spec=False``; it still loads on first access)."""
    stmt = select(Run).where(Run.id == run_id).execution_options(populate_existing=True)
    if not with_spec:
        stmt = stmt.options(defer(Run.spec))  # type: ignore[arg-type]
    if for_update:
        stmt = stmt.with_for_update()
    run = session.exec(stmt).first()
    if run is None:
        raise RunNotFound(f"no run {run_id}")
    return run


def get_run_and_step(
    session: Session, run_id: int, index: int | None = None, *, with_spec: bool = True
) -> tuple[Run, Step | None]:
    """The run and one of its steps, fresh, in one read: step ``index``, or by default the step
    at the run's cursor (None when the cursor is past the last step)."""
    at = Step.idx == (Run.cursor if index is None else index)
    stmt = (
        select(Run, Step)
        .outerjoin(Step, and_(col(Step.run_id) == Run.id, at))
        .where(Run.id == run_id)
        .execution_options(populate_existing=True)
    )
    if not with_spec:
        stmt = stmt.options(defer(Run.spec))  # type: ignore[arg-type]
    found = session.exec(stmt).first()
    if found is None:
        raise RunNotFound(f"no run {run_id}")
    return found[0], found[1]


def get_by_key(session: Session, key: str) -> Run | None:
    return session.exec(select(Run).where(Run.idempotency_key == key)).first()


def get_steps(session: Session, run_id: int) -> list[Step]:
    stmt = (
        select(Step)
        .where(Step.run_id == run_id)
        .order_by(col(Step.idx))
        .execution_options(populate_existing=True)
    )
    return list(session.exec(stmt))


def step_results(session: Session, run_id: int) -> list[Any]:
    """The steps of the run that are no longer pending, as plain rows (idx, status, output,
    finished_at): the runbook step reads them before every step, so no ORM instances, and
    nothing of the steps still ahead."""
    t = Step.__table__  # type: ignore[attr-defined]
    stmt = (
        select(t.c.idx, t.c.status, t.c.output, t.c.finished_at)
        .where(t.c.run_id == run_id, t.c.status != STEP_PENDING)
        .order_by(t.c.idx)
    )
    return list(session.connection().execute(stmt))


def step_shapes(session: Session, run_id: int) -> list[Any]:
    """(idx, action, input) of every step of the run: written with the run, never changed."""
    t = Step.__table__  # type: ignore[attr-defined]
    stmt = select(t.c.idx, t.c.action, t.c.input).where(t.c.run_id == run_id).order_by(t.c.idx)
    return list(session.connection().execute(stmt))


def get_step(session: Session, run_id: int, idx: int) -> Step:
    stmt = (
        select(Step)
        .where(Step.run_id == run_id, Step.idx == idx)
        .execution_options(populate_existing=True)
    )
    step = session.exec(stmt).first()
    if step is None:  # pragma: no cover - rows are written with the run
        raise RunNotFound(f"run {run_id} has no step {idx + 1}")
    return step


def incident_ref(session: Session, incident_id: int | None) -> str | None:
    """How people call the run's subject (e.g. ``INC-3``): :mod:`incidentbot.ledger.subjects`."""
    if incident_id is None:
        return None
    return describe(session, incident_id) or f"incident #{incident_id}"


def lock_holder(session: Session, target: str) -> Run | None:
    lock = session.exec(select(TargetLock).where(TargetLock.target == target)).first()
    return session.get(Run, lock.run_id) if lock else None


# -- starting ----------------------------------------------------------------------------------


def start_run(
    session: Session,
    *,
    kind: str,
    key: str,
    steps: Sequence[StepSpec | dict[str, Any]],
    actor: str,
    target: str | None = None,
    incident_id: int | None = None,
    actions: ActionRegistry = registry,
    wake_at: datetime | None = None,
) -> Run:
    """Start a run, or return the run already started with ``key``.

    ``wake_at``: no worker claims it before then (kept only if it is ahead of the database
    clock; for a run with no target).

    The target lock is taken in this same transaction, so a run exists if and only if it holds
    its lock. Two processes starting the same key at once both get the one run: the loser of the
    unique-constraint race rolls back to a savepoint and reads the winner's row.
    """
    kind = clean_text(kind, "the run kind", 64)
    key = clean_text(key, "the idempotency key", 200)
    actor = clean_text(actor, "the actor", 128)
    target = clean_text(target, "the target", 200) if target is not None else None
    resolved = _resolve(parse_steps(steps), actions)
    if target is None:  # no lock to take: two Core inserts (see ledger.untargeted)
        if incident_id is not None and describe(session, incident_id) is None:
            raise NotFound(f"no incident with id {incident_id}")
        run = untargeted.insert(session, kind, key, resolved, actor, incident_id, wake_at)
        if run is None:  # the key was started before (or by a racing start that committed)
            existing = get_by_key(session, key)
            assert existing is not None
            return _same_run(existing, kind, None)
        emit(session, event_for(run, "run.created", run.created_at, data={"actor": actor}))
        log.info("run %s started: %s key=%s", run.id, kind, key)
        return run
    if wake_at is not None:
        raise DomainError("a run with a target starts at once (no wake_at)")
    for _ in range(3):
        existing = get_by_key(session, key)
        if existing is not None:
            return _same_run(existing, kind, target)
        if target is not None:
            holder = lock_holder(session, target)
            if holder is not None and holder.idempotency_key == key:
                # Committed by a racing start between the two reads above: the same run.
                return _same_run(holder, kind, target)
            if holder is not None:
                raise _lock_held(session, target, holder)
        if incident_id is not None and describe(session, incident_id) is None:
            raise NotFound(f"no incident with id {incident_id}")
        try:
            with session.begin_nested():
                run = _insert(session, kind, key, resolved, actor, target, incident_id)
        except IntegrityError:
            log.debug("start of %s raced another start; re-reading", key)
            continue
        emit(session, event_for(run, "run.created", run.created_at, data={"actor": actor}))
        log.info("run %s started: %s key=%s target=%s", run.id, kind, key, target)
        return run
    raise DomainError(f"could not start run {key!r}: it kept racing other starts, try again")


def start_runs(
    session: Session,
    runs: Sequence[tuple[str, str, Sequence[StepSpec | dict[str, Any]]]],
    *,
    actor: str,
    incident_id: int | None = None,
    actions: ActionRegistry = registry,
) -> None:
    """Start several runs without a target, ``(kind, key, steps)`` each, for one subject: what
    :func:`start_run` does for each, with two statements for all of them (the runs in one
    multi-row ``INSERT``, their steps in one ``executemany``) and no ORM instance. A key that
    already names a run of the same kind is that run (a repeated declare); of another kind, an
    error. The caller gets no run back: the runs are the workers'."""
    actor = clean_text(actor, "the actor", 128)
    checked = checked_runs(runs, actions)
    if incident_id is not None and describe(session, incident_id) is None:
        raise NotFound(f"no incident with id {incident_id}")
    started = untargeted.insert_many(session, checked, actor, incident_id)
    runs_started(session, checked, started, actor=actor, incident_id=incident_id)


def checked_runs(
    runs: Sequence[tuple[str, str, Sequence[StepSpec | dict[str, Any]]]],
    actions: ActionRegistry = registry,
) -> list[tuple[str, str, list[StepSpec]]]:
    """The runs ``(kind, key, steps)`` of :func:`start_runs`, checked: kind and key cleaned,
    each step's action known and its input JSON."""
    return [
        (
            clean_text(kind, "the run kind", 64),
            clean_text(key, "the idempotency key", 200),
            _resolve(parse_steps(steps), actions),
        )
        for kind, key, steps in runs
    ]


def runs_started(
    session: Session,
    checked: Sequence[tuple[str, str, list[StepSpec]]],
    started: dict[str, tuple[int, datetime]],
    *,
    actor: str,
    incident_id: int | None,
) -> None:
    """After the runs ``checked`` were inserted, those of ``started`` (key: id, creation time)
    new: each announced (``run.created``: the workers are woken once the transaction commits);
    each of the others must be a run of the same kind already started with its key. One log
    line for them all (a declare starts two: each line is a record through the log's filter
    and handler on the thread that answers)."""
    new: list[tuple[int, str, str]] = []
    for kind, key, _steps in checked:
        if key not in started:  # started before (or by a racing start that committed)
            existing = get_by_key(session, key)
            assert existing is not None
            _same_run(existing, kind, None)
            continue
        run_id, now = started[key]
        emit(
            session,
            LedgerEvent(
                kind="run.created",
                run_id=run_id,
                run_kind=kind,
                run_status=PENDING,
                at=now,
                incident_id=incident_id,
                data={"actor": actor},
            ),
        )
        new.append((run_id, kind, key))
    if len(new) == 1:
        log.info("run %s started: %s key=%s", *new[0])
    elif new and log.isEnabledFor(logging.INFO):
        log.info("runs started: %s", "; ".join(f"{i} {kind} key={key}" for i, kind, key in new))


def clean_text(value: str, what: str, limit: int) -> str:
    value = str(value).strip()
    if not value:
        raise DomainError(f"{what} is empty")
    if len(value) > limit:
        raise DomainError(f"{what} is {len(value)} characters long: at most {limit}")
    return value


def _resolve(steps: list[StepSpec], actions: ActionRegistry) -> list[StepSpec]:
    out: list[StepSpec] = []
    for i, step in enumerate(steps, start=1):
        info = actions.get(step.action)
        if info is None:
            known = ", ".join(actions.names())
            raise DomainError(
                f"step {i} {step.name!r}: unknown action {step.action!r} (known: {known})"
            )
        try:
            json.dumps(step.input)
        except (TypeError, ValueError) as exc:
            raise DomainError(f"step {i} {step.name!r}: input is not JSON: {exc}") from None
        idempotent = info.idempotent if step.idempotent is None else step.idempotent
        out.append(step.model_copy(update={"idempotent": idempotent}))
    return out


def _same_run(existing: Run, kind: str, target: str | None) -> Run:
    if existing.kind != kind or existing.target != target:
        raise DomainError(
            f"idempotency key {existing.idempotency_key!r} already started run {existing.id} "
            f"({existing.kind} on {existing.target or 'no target'}): use a new key"
        )
    return existing


def _lock_held(session: Session, target: str, holder: Run) -> LockHeld:
    assert holder.id is not None
    ref = incident_ref(session, holder.incident_id)
    for_what = f" for {ref}" if ref else ""
    since = holder.lock_acquired_at or holder.created_at
    return LockHeld(
        f"target {target!r} is locked by run {holder.id} ({holder.kind}, {holder.status})"
        f"{for_what} since {since:%Y-%m-%d %H:%M:%S} UTC: wait for it to finish or cancel it "
        f"(incidentbot runs cancel {holder.id})",
        target=target,
        run_id=holder.id,
    )


def _insert(
    session: Session,
    kind: str,
    key: str,
    steps: list[StepSpec],
    actor: str,
    target: str | None,
    incident_id: int | None,
) -> Run:
    now = db_now(session)
    run = Run(
        kind=kind,
        idempotency_key=key,
        spec=snapshot(steps),
        status=PENDING,
        incident_id=incident_id,
        target=target,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(run)
    session.flush()
    assert run.id is not None
    for i, step in enumerate(steps):
        session.add(
            Step(
                run_id=run.id,
                idx=i,
                name=step.name,
                action=step.action,
                idempotent=bool(step.idempotent),
                input=redact(step.input),
            )
        )
    if target is not None:
        lock = TargetLock(target=target, run_id=run.id, acquired_at=now)
        session.add(lock)
        session.flush()
        # Read the clock again now that the insert went through: on PostgreSQL it may have
        # waited for the previous holder's release to commit, and the recorded acquire time
        # must not precede that release.
        acquired = db_now(session)
        lock.acquired_at = acquired
        run.lock_acquired_at = acquired
    session.flush()
    return run
