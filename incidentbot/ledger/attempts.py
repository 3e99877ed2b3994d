"""What a step attempt is and how it ended: read when the step is marked started
(:class:`Attempt`, built by :func:`attempt_of`, with its action's context and what its
``prepare`` read: :func:`prepared_context`), handed back by the worker when the action returns
(:data:`Outcome`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from incidentbot.ledger.actions import ActionRegistry, Decision, StepContext, Verdict
from incidentbot.ledger.redact import redact
from incidentbot.ledger.spec import RetryPolicy, StepSpec


@dataclass(frozen=True)
class Attempt:
    """Everything one attempt needs, read in the transaction that marked the step started."""

    run_id: int
    run_kind: str
    incident_id: int | None
    target: str | None
    index: int
    name: str
    action: str
    input: dict[str, Any]
    idempotent: bool
    attempt: int
    timeout: float
    retry: RetryPolicy
    decision: Decision | None
    last: bool
    has_rollback: bool = False  # rollback steps wait for this step's failure
    is_rollback: bool = False  # this step is itself a rollback step
    cleanup_ahead: bool = False  # clean-up (always) steps follow this one


@dataclass(frozen=True)
class Succeeded:
    output: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    verdict: Verdict


Outcome = Succeeded | Failed


def recorded_output(outcome: Succeeded) -> dict[str, Any]:
    """What is stored of a success: its output as a JSON object, redacted."""
    value: Any = outcome.output
    if value is None:
        value = {}
    elif not isinstance(value, dict):
        value = {"result": value}
    return redact(json.loads(json.dumps(value, default=str)))


def attempt_of(
    run_id: int, started: dict[str, Any], specs: list[StepSpec], decision: Decision | None
) -> Attempt:
    """The attempt of the step just marked started (``started``: what that read)."""
    index = started["index"]
    spec = specs[index]
    rollback_targets, cleanup_after = _layout(specs)
    return Attempt(
        run_id=run_id,
        run_kind=started["run_kind"],
        incident_id=started["incident_id"],
        target=started["target"],
        index=index,
        name=started["name"],
        action=spec.action,
        input=dict(spec.input),
        idempotent=started["idempotent"],
        attempt=started["attempt"],
        timeout=spec.timeout,
        retry=spec.retry,
        decision=decision,
        last=index == len(specs) - 1,
        has_rollback=index in rollback_targets,
        is_rollback=spec.rollback_for is not None,
        cleanup_ahead=cleanup_after[index],
    )


class PrepareFailed:
    """What an action's ``prepare`` raised: the attempt fails with it, as with the action's."""

    def __init__(self, error: Exception):
        self.error = error


def context_of(attempt: Attempt) -> StepContext:
    """The context the attempt's action is called with."""
    return StepContext(
        run_id=attempt.run_id,
        run_kind=attempt.run_kind,
        step_index=attempt.index,
        step_name=attempt.name,
        attempt=attempt.attempt,
        incident_id=attempt.incident_id,
        target=attempt.target,
        decision=attempt.decision,
    )


def prepared_context(session: Any, attempt: Attempt, actions: ActionRegistry) -> StepContext:
    """The attempt's context, with what the action's ``prepare`` reads in the transaction
    that marks the step started (a failure is kept, to fail the attempt as the action's
    would; a database error is raised: the transaction may be unusable, nothing commits)."""
    ctx = context_of(attempt)
    info = actions.get(attempt.action)
    if info is not None and info.prepare is not None:
        try:
            ctx.prepared = info.prepare(session, ctx, dict(attempt.input))
        except SQLAlchemyError:
            raise
        except Exception as exc:
            ctx.prepared = PrepareFailed(exc)
    return ctx


# Per spec list (a run's, cached by its worker): the steps that have rollback steps, and for
# each step whether clean-up steps follow it, worked out once instead of at every step.
_LAYOUTS: dict[int, tuple[list[StepSpec], frozenset[int], tuple[bool, ...]]] = {}


def _layout(specs: list[StepSpec]) -> tuple[frozenset[int], tuple[bool, ...]]:
    entry = _LAYOUTS.get(id(specs))
    if entry is None or entry[0] is not specs:
        targets = frozenset(s.rollback_for for s in specs if s.rollback_for is not None)
        after: list[bool] = []
        seen = False
        for s in reversed(specs):
            after.append(seen)
            seen = seen or s.always
        entry = (specs, targets, tuple(reversed(after)))
        if len(_LAYOUTS) >= 256:
            _LAYOUTS.clear()
        _LAYOUTS[id(specs)] = entry
    return entry[1], entry[2]
