"""What a runbook step reads before it runs, in as few statements as the step needs.

Every attempt of a ``runbook.step`` needs the run's params and requester, the incident as it
is now, the definition the run was started with and, when its expressions read them, the
earlier steps' statuses and outputs. :func:`read` gets them in one read transaction:

- the runbook run and its incident in one ``SELECT`` (a join; only the columns used);
- the definition from the process's cache (parsed once per run and process; the column is
  read only on a miss);
- what each step of the definition needs, worked out once per definition (:class:`Shape`):
  the step by id, whether it is a rollback or a clean-up step, and whether its ``when``,
  ``with`` or ``wait_until`` read ``steps`` at all;
- the earlier steps' results only for a step that reads ``steps`` or is held to the
  runbook's timeout (which counts from the approval).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlmodel import Session

from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident
from incidentbot.ledger import service as ledger
from incidentbot.ledger.models import STEP_PENDING, STEP_SKIPPED
from incidentbot.runbooks import engine, expr_refs, planning
from incidentbot.runbooks.actions import IncidentInfo
from incidentbot.runbooks.definition import RollbackStep, Runbook
from incidentbot.runbooks.expr_syntax import ExpressionError, is_template
from incidentbot.runbooks.models import RunbookRun

_rr = RunbookRun.__table__  # type: ignore[attr-defined]
_inc = Incident.__table__  # type: ignore[attr-defined]

_RUN_AND_INCIDENT = (
    select(
        _rr.c.id,
        _rr.c.digest,
        _rr.c.params,
        _rr.c.requester,
        _rr.c.incident_id,
        _rr.c.created_at,
        _inc.c.number,
        _inc.c.title,
        _inc.c.severity,
        _inc.c.status,
        _inc.c.channel_id,
        _inc.c.commander,
        _inc.c.fields,
    )
    .select_from(_rr.outerjoin(_inc, _inc.c.id == _rr.c.incident_id))
    .where(_rr.c.run_id == bindparam("run_id"))
)
_DEFINITION = select(_rr.c.definition).where(_rr.c.id == bindparam("id"))


@dataclass(frozen=True)
class Shape:
    """What one step of a definition needs read before it runs (worked out once)."""

    step: RollbackStep
    is_rollback: bool
    is_cleanup: bool
    reads_steps: bool  # its when, with or wait_until.check read `steps`


@dataclass(frozen=True)
class StepReads:
    """Everything a step attempt reads from the database, read in one transaction."""

    runbook_run_id: int
    runbook: Runbook
    params: dict[str, Any]
    requester: str
    incident: IncidentInfo | None
    shape: Shape | None  # None: the definition has no such step
    states: dict[str, Any] | None  # ``steps.<id>``; None when the step does not read them
    started: datetime  # what the runbook's timeout counts from


def read(session: Session, run_id: int, step_id: str) -> StepReads:
    """What step ``step_id`` of runbook run ``run_id`` reads (DomainError: not a runbook run)."""
    conn = session.connection()
    row = conn.execute(_RUN_AND_INCIDENT, {"run_id": run_id}).first()
    if row is None:
        raise DomainError(f"run {run_id} is not a runbook run")
    key = (row.id, run_id, row.digest)  # the digest names the definition's content
    runbook = engine.cached_definition(
        key, lambda: conn.execute(_DEFINITION, {"id": row.id}).scalar_one()
    )
    shape = shapes_of(key, runbook).get(step_id)
    incident = None
    if row.incident_id is not None and row.number is not None:
        incident = IncidentInfo(
            id=row.incident_id,
            ref=f"INC-{row.number}",
            title=row.title,
            severity=row.severity,
            status=row.status,
            channel_id=row.channel_id,
            commander=row.commander,
            fields=dict(row.fields or {}),
        )
    states, started = None, row.created_at
    timed = shape is not None and runbook.timeout and not (shape.is_rollback or shape.is_cleanup)
    if shape is not None and (shape.reads_steps or timed):
        layout = _layout(session, run_id)
        results = ledger.step_results(session, run_id)
        states = _step_states(layout, results)
        started = _clock_start(layout, results, row.created_at)
    return StepReads(
        runbook_run_id=row.id,
        runbook=runbook,
        params=dict(row.params or {}),
        requester=row.requester,
        incident=incident,
        shape=shape,
        states=states,
        started=started,
    )


# -- per definition ------------------------------------------------------------------------------

_SHAPES: OrderedDict[tuple[int, int, str], dict[str, Shape]] = OrderedDict()
_SHAPES_MAX = 256
_lock = threading.Lock()


def shapes_of(key: tuple[int, int, str], runbook: Runbook) -> dict[str, Shape]:
    """Each step of the definition by id, with what it needs read (cached like the definition)."""
    with _lock:
        found = _SHAPES.get(key)
        if found is not None:
            _SHAPES.move_to_end(key)
            return found
    rollback_ids = {rb.id for st in runbook.steps for rb in st.on_failure}
    found = {
        step.id: Shape(
            step=step,
            is_rollback=step.id in rollback_ids,
            is_cleanup=planning.is_cleanup(step),
            reads_steps=_reads_steps(step),
        )
        for step in reversed(runbook.all_steps())  # the first of a repeated id wins, as before
    }
    with _lock:
        _SHAPES[key] = found
        while len(_SHAPES) > _SHAPES_MAX:
            _SHAPES.popitem(last=False)
    return found


def _reads_steps(step: RollbackStep) -> bool:
    """Whether any expression of the step reads ``steps`` (an unreadable one counts as
    reading it: evaluating it then reports the error as it always did)."""
    texts: list[tuple[str, bool]] = [(t, False) for t in _templates(step.with_)]
    if isinstance(step.when, str):
        texts.append((step.when, True))
    if step.wait_until is not None:
        texts.append((step.wait_until.check, True))
    return any(_text_reads_steps(t, c) for t, c in texts)


@lru_cache(maxsize=4096)
def _text_reads_steps(text: str, condition: bool) -> bool:
    try:
        return "steps" in expr_refs.variables(text, condition=condition)
    except ExpressionError:
        return True


def _templates(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for item in value.values() for t in _templates(item)]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _templates(item)]
    return [value] if is_template(value) else []


# -- per run -------------------------------------------------------------------------------------

# (action, runbook step id) of each ledger step of a run, by index: written with the run and
# never changed, so read once per run and process.
_LAYOUTS: dict[tuple[str, int], dict[int, tuple[str, str]]] = {}
_LAYOUTS_MAX = 256


def _layout(session: Session, run_id: int) -> dict[int, tuple[str, str]]:
    key = (str(session.get_bind().engine.url), run_id)
    with _lock:
        found = _LAYOUTS.get(key)
    if found is None:
        found = {
            idx: (action, str((inputs or {}).get("step") or ""))
            for idx, action, inputs in ledger.step_shapes(session, run_id)
        }
        with _lock:
            if len(_LAYOUTS) >= _LAYOUTS_MAX:
                _LAYOUTS.clear()
            _LAYOUTS[key] = found
    return found


def _step_states(layout: dict[int, tuple[str, str]], results: list[Any]) -> dict[str, Any]:
    """``steps.<id>``: status and (stored, redacted) outputs of the steps so far; the steps not
    in ``results`` (no longer pending) are pending, without outputs."""
    done = {r.idx: r for r in results}
    states: dict[str, Any] = {}
    for idx, (_action, step_id) in layout.items():
        if not step_id:
            continue
        r = done.get(idx)
        if r is None:
            states[step_id] = {"status": STEP_PENDING, "outputs": {}}
            continue
        output = dict(r.output or {})
        status = r.status
        if output.get("skipped") is True or status == STEP_SKIPPED:
            status = "skipped"
        states[step_id] = {"status": status, "outputs": output}
    return states


def _clock_start(layout: dict[int, tuple[str, str]], results: list[Any], created: Any) -> Any:
    """The run's timeout counts from its approval, not from the request."""
    for r in results:
        if layout[r.idx][0] == planning.APPROVAL_ACTION and r.finished_at is not None:
            return r.finished_at
    return created
