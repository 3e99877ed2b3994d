"""What the decisions after a crash mean for a runbook run: skip, resume, abort.

A step that is not idempotent and was interrupted leaves its run ``needs_attention``: a person
checks the target and decides. This module holds what those decisions need to know about the
runbook itself (the ledger knows only steps):

- **Skip ("it happened")** goes on with the next step, so the later steps read the skipped
  step's outputs. A step declares ``if_skipped:`` (values or expressions) for the outputs later
  steps read; :func:`skip_gaps` finds the ones a skip would leave undefined. The checker
  refuses an ``if_skipped`` that misses one; for a step without ``if_skipped`` whose outputs are
  read later, :func:`resume` refuses the skip and says which steps read what.
- **Resume** runs the step again; **abort** (the ledger's cancel) runs the step's
  ``on_failure`` steps first when it has any, so a drained node is put back or the run says it
  is left drained.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session

from incidentbot.errors import DomainError
from incidentbot.ledger import control
from incidentbot.ledger import service as ledger
from incidentbot.runbooks import engine, expr, expr_refs, expr_syntax
from incidentbot.runbooks.definition import RollbackStep, Runbook

ALL = "*"  # the whole outputs mapping is read (a computed name, or no name at all)


def outputs_read_after(runbook: Runbook, step_id: str) -> dict[str, list[str]]:
    """Output name → ids of the steps that run after ``step_id`` and read
    ``steps.<step_id>.outputs.<name>`` (``*`` when they read outputs by a computed name)."""
    main = [s.id for s in runbook.steps]
    if step_id not in main:
        return {}
    readers: dict[str, list[str]] = {}
    for step in runbook.steps[main.index(step_id) + 1 :]:
        for reader in [step, *step.on_failure]:
            for name in _outputs_read(reader, step_id):
                readers.setdefault(name, [])
                if reader.id not in readers[name]:
                    readers[name].append(reader.id)
    return readers


def skip_gaps(runbook: Runbook, step_id: str) -> dict[str, list[str]]:
    """The outputs of ``step_id`` later steps read that its ``if_skipped`` does not give."""
    step = runbook.step(step_id)
    given = set(step.if_skipped) if step is not None else set()
    return {
        name: readers
        for name, readers in outputs_read_after(runbook, step_id).items()
        if name not in given and not (name == ALL and given)
    }


def describe_gaps(step_id: str, gaps: dict[str, list[str]]) -> str:
    """``note reads steps.restart.outputs.pid, pid_before; verify reads ...``"""
    by_reader: dict[str, list[str]] = {}
    for name, readers in gaps.items():
        for reader in readers:
            by_reader.setdefault(reader, []).append(name)
    parts = []
    for reader, names in by_reader.items():
        shown = [f"steps.{step_id}.outputs" if n == ALL else n for n in names]
        first = shown[0] if shown[0].startswith("steps.") else f"steps.{step_id}.outputs.{shown[0]}"
        parts.append(f"{reader} reads {', '.join([first, *shown[1:]])}")
    return "; ".join(parts)


def resume(session: Session, run_id: int, *, actor: str, skip: bool = False) -> str:
    """The ledger's resume, refusing a skip that would leave later steps without the outputs
    they read (nothing is changed then)."""
    if skip:
        problem = skip_refusal(session, run_id)
        if problem:
            raise DomainError(problem)
    return control.resume(session, run_id, actor=actor, skip=skip)


def skip_refusal(session: Session, run_id: int) -> str | None:
    """Why the step a runbook run waits at cannot be skipped; None if it can (or the run is
    not a runbook run)."""
    try:
        _row, runbook = engine.load(session, run_id)
    except DomainError:
        return None
    run = ledger.get_run(session, run_id, with_spec=False)
    step = ledger.get_step(session, run_id, run.cursor)
    step_id = str((step.input or {}).get("step", ""))
    gaps = skip_gaps(runbook, step_id) if step_id else {}
    if not gaps:
        return None
    return (
        f"run {run_id}: {step.label} cannot be skipped: later steps read outputs it would "
        f"not have ({describe_gaps(step_id, gaps)}). Resume it (run it again) or abort the "
        f"run; or give the step if_skipped outputs in runbook {runbook.name}"
    )


def _outputs_read(step: RollbackStep, step_id: str) -> set[str]:
    found: set[str] = set()
    for text, condition in _expressions(step):
        try:
            paths = expr_refs.references(text, condition=condition)
        except expr_syntax.ExpressionError:
            continue  # the checker reports it
        for path in paths:
            if path[:2] != ("steps", step_id):
                continue
            if len(path) == 2 or path[2] == "outputs":
                found.add(path[3] if len(path) > 3 else ALL)
    return found


def _expressions(step: RollbackStep) -> Iterable[tuple[str, bool]]:
    for text in _strings([step.with_, step.if_skipped]):
        if expr_syntax.is_template(text):
            yield text, False
    if step.when:
        yield step.when, True
    if step.wait_until is not None:
        yield step.wait_until.check, True


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def fill_skipped(runbook: Runbook, variables: dict[str, Any]) -> None:
    """Give each step a person skipped (no outputs stored) its ``if_skipped`` outputs, in
    step order, so they may read the steps before them. Raises ExpressionError."""
    steps = variables.get("steps") or {}
    for step in runbook.all_steps():
        state = steps.get(step.id)
        if not step.if_skipped or state is None:
            continue
        if state.get("status") == "skipped" and not state.get("outputs"):
            state["outputs"] = expr.render(step.if_skipped, variables)
