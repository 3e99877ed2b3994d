"""Runs started inside another PostgreSQL statement, as two of its data-modifying ``WITH``
clauses, rather than by two statements of their own (:func:`service.start_runs`).

A declare typed in Slack writes its incident in one statement
(:mod:`incidentbot.incidents.declare_statement`), and Slack waits for its answer while the runs
it queues (the channel, the announcement) are written: each statement is a round trip. Here the
ledger hands that statement its run rows instead of executing them: :func:`fold` checks the runs
as :func:`service.start_runs` does; :func:`ctes` is the SQL of two clauses, ``ledger_runs``
(the run rows, ``INSERT ... ON CONFLICT (idempotency_key) DO NOTHING``, created on the
statement's clock) and ``ledger_steps`` (the new runs' step rows), over one row of the caller's
(the run's subject: its ``id``, and the SQL ``prefix`` every key starts with, which only the
statement knows, an incident's number); :func:`params` their parameters (two JSON arrays);
:data:`RESULT` the column that hands back the runs written, which :func:`record` announces as
:func:`service.start_runs` does (the workers are woken once the transaction commits). No row of
the subject, nothing is written (a refused or repeated declare).

The rows are those :func:`untargeted.insert_many` writes, column for column; on SQLite (no
round trip to save) :func:`start` writes them with it, after the declare's own statements,
without checking them a second time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from incidentbot.errors import DomainError
from incidentbot.ledger import untargeted
from incidentbot.ledger.actions import ActionRegistry, registry
from incidentbot.ledger.models import PENDING, STEP_PENDING
from incidentbot.ledger.redact import redact
from incidentbot.ledger.service import checked_runs, clean_text, runs_started
from incidentbot.ledger.spec import StepSpec, snapshot

# A key is its prefix (an incident's ref: "INC-" and a number) and its suffix.
MAX_PREFIX = 40


@dataclass
class Folded:
    """Runs ``(kind, key suffix, steps)`` checked, to be written by another statement.
    ``started``: their full keys' (id, creation time) once that statement (on SQLite,
    :func:`start`) wrote them; None while it has not (or wrote none: its subject was not
    written)."""

    runs: list[tuple[str, str, list[StepSpec]]]
    actor: str
    started: dict[str, tuple[int, datetime]] | None = None


def fold(
    runs: Sequence[tuple[str, str, Sequence[StepSpec | dict[str, Any]]]],
    *,
    actor: str,
    actions: ActionRegistry = registry,
) -> Folded:
    """The runs ``(kind, key suffix, steps)``, checked as :func:`service.start_runs` checks
    them (before the statement: a refusal writes nothing)."""
    checked = checked_runs(runs, actions)
    for _kind, suffix, _steps in checked:
        if len(suffix) > 200 - MAX_PREFIX:
            raise DomainError(f"the idempotency key is {len(suffix)} characters long")
    return Folded(checked, clean_text(actor, "the actor", 128))


def ctes(subject: str, prefix: str) -> str:
    """The two clauses, over ``subject`` (a clause of the statement with at most one row, its
    column ``id`` the runs' ``incident_id``); ``prefix``: the SQL every key starts with, made
    of ``subject``'s columns (names only: no value is ever part of the text)."""
    return (
        "ledger_runs AS (INSERT INTO ledger_run (kind, idempotency_key, spec, status, cursor,"  # noqa: S608
        " incident_id, created_by, takeovers, created_at, updated_at, wake_at)"
        f" SELECT r.kind, {prefix} || r.key, r.spec, CAST(:fold_status AS varchar), 0,"
        f" {subject}.id, CAST(:fold_actor AS varchar), 0, statement_timestamp(),"
        " statement_timestamp(), NULL"
        f" FROM {subject}, ROWS FROM (json_to_recordset(CAST(:fold_runs AS json))"
        " AS (kind varchar, key text, spec json)) WITH ORDINALITY AS r(kind, key, spec, n)"
        " ORDER BY r.n"  # the ids follow the order given
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, idempotency_key, created_at),"
        " ledger_steps AS (INSERT INTO ledger_step (run_id, idx, name, action, status,"
        " attempts, idempotent, input)"
        " SELECT ledger_runs.id, s.idx, s.name, s.action, CAST(:fold_step_status AS varchar),"
        " 0, s.idempotent, s.input"
        f" FROM {subject}, ledger_runs, ROWS FROM (json_to_recordset(CAST(:fold_steps AS json))"
        " AS (key text, idx integer, name varchar, action varchar, idempotent boolean,"
        " input json)) WITH ORDINALITY AS s(key, idx, name, action, idempotent, input, n)"
        f" WHERE ledger_runs.idempotency_key = {prefix} || s.key ORDER BY s.n)"
    )


# The runs written: a JSON array of [id, key, creation time], or NULL.
RESULT = (
    "(SELECT json_agg(json_build_array(id, idempotency_key, created_at) ORDER BY id)"
    " FROM ledger_runs)"
)


def params(folded: Folded) -> dict[str, Any]:
    runs = [
        {"kind": kind, "key": suffix, "spec": snapshot(steps)}
        for kind, suffix, steps in folded.runs
    ]
    steps = [
        {
            "key": suffix,
            "idx": i,
            "name": step.name,
            "action": step.action,
            "idempotent": bool(step.idempotent),
            "input": redact(step.input),
        }
        for _kind, suffix, steps in folded.runs
        for i, step in enumerate(steps)
    ]
    return {
        "fold_runs": json.dumps(runs),
        "fold_steps": json.dumps(steps),
        "fold_actor": folded.actor,
        "fold_status": PENDING,
        "fold_step_status": STEP_PENDING,
    }


def record(session: Session, folded: Folded, result: Any, prefix: str, incident_id: int) -> None:
    """After the statement wrote its subject (``prefix``: the keys' prefix it used), with its
    :data:`RESULT`: the new runs announced, a key that was taken checked to name a run of the
    same kind (as :func:`service.start_runs`)."""
    rows = json.loads(result) if isinstance(result, str) else (result or [])
    started = {
        str(key): (int(run_id), datetime.fromisoformat(at).astimezone(UTC))
        for run_id, key, at in rows
    }
    folded.started = started
    full = [(kind, prefix + suffix, steps) for kind, suffix, steps in folded.runs]
    runs_started(session, full, started, actor=folded.actor, incident_id=incident_id)


def start(session: Session, folded: Folded, prefix: str, incident_id: int) -> None:
    """On SQLite, once the subject is written: the runs written by their own two statements
    (:func:`untargeted.insert_many`) and announced, as :func:`service.start_runs` does for runs
    :func:`fold` already checked."""
    full = [(kind, prefix + suffix, steps) for kind, suffix, steps in folded.runs]
    started = untargeted.insert_many(session, full, folded.actor, incident_id)
    folded.started = started
    runs_started(session, full, started, actor=folded.actor, incident_id=incident_id)
