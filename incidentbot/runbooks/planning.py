"""Planning a runbook run: what each step would do, and the ledger steps the run is made of.

:func:`plan` checks the params and renders every step's ``when`` and ``with`` against them
without touching anything (each action's ``plan()`` only describes); :func:`format_plan` is
the dry-run text the CLI and Slack share. :func:`ledger_steps` turns a runbook into the steps
of its ledger run:

1. ``runbook.announce``: post the run's Slack message (runs started in an incident channel);
2. ``runbook.approval``: parked until the approvers decide (when the runbook asks for approval);
3. one ``runbook.step`` per runbook step, in order;
4. the ``on_failure`` steps, as ledger rollback steps of the step they belong to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from incidentbot.errors import DomainError
from incidentbot.runbooks import expr, keyguard
from incidentbot.runbooks.actions import ActionContext, IncidentInfo, Services, registry
from incidentbot.runbooks.definition import RollbackStep, Runbook, format_seconds
from incidentbot.runbooks.egress import EgressRefused
from incidentbot.runbooks.params import coerce
from incidentbot.runbooks.run_context import (
    context,
    mask_value,
    run_masker,
    shown_params,
    shown_target,
    target_value,
)

STEP_ACTION = "runbook.step"
# A step whose action talks to Slack: only a process with Slack registers it, so a worker
# without Slack hands such a run back to one that has it instead of failing the step.
CHAT_STEP_ACTION = "runbook.step.chat"
STEP_ACTIONS = (STEP_ACTION, CHAT_STEP_ACTION)
ANNOUNCE_ACTION = "runbook.announce"
APPROVAL_ACTION = "runbook.approval"
DEFAULT_STEP_TIMEOUT = 300.0
DEFAULT_POLL_TIMEOUT = 60.0
APPROVALS_NEEDED = {"none": 0, "commander": 1, "two-person": 2}
CHAT_RETRY = {"max_attempts": 8, "backoff": 0.5, "max_backoff": 30.0}


@dataclass
class PlannedStep:
    id: str
    label: str
    uses: str
    inputs: dict[str, Any]  # masked
    will_run: bool | None  # False: `when` is false; None: decided at run time
    does: str  # the action's own description of what it would do
    idempotent: bool
    timeout: float
    wait_until: str | None = None
    rollback_for: str | None = None
    problem: str | None = None  # the inputs do not fit the action (known before the run)
    always: bool = False  # a clean-up step


@dataclass
class Plan:
    runbook: Runbook
    params: dict[str, Any]  # real values: never show these, show `shown_params`
    shown_params: dict[str, str]
    target: str | None
    approval: str
    approvals_needed: int
    steps: list[PlannedStep] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"step {s.id}: {s.problem}" for s in self.steps if s.problem]


def _action(uses: str) -> Any:
    action = registry.get(uses)
    if action is None:
        raise DomainError(f"unknown action {uses!r}: it is not installed in this bot")
    return action


def ledger_step_options(step: RollbackStep) -> dict[str, Any]:
    action = _action(step.uses)
    idempotent = step.idempotent if step.idempotent is not None else action.idempotent
    timeout = step.timeout or (DEFAULT_POLL_TIMEOUT if step.wait_until else DEFAULT_STEP_TIMEOUT)
    if step.wait_until is not None:
        timeout += step.wait_until.timeout
    options: dict[str, Any] = {"idempotent": idempotent, "timeout": timeout}
    if step.retry is not None:
        options["retry"] = step.retry.model_dump(mode="json")
    return options


def plan(
    runbook: Runbook,
    raw_params: Mapping[str, Any],
    *,
    incident: IncidentInfo | None = None,
    requester: str | None = None,
    services: Services | None = None,
    variables: Mapping[str, Any] | None = None,
) -> Plan:
    """Resolve params, target and expressions and say what every step would do.

    Nothing is touched: each action's ``plan()`` only describes. Raises ParamError for bad
    params and DomainError for expressions that fail on the params alone."""
    values = coerce(runbook, raw_params)
    mask = run_masker(runbook, values)
    ctx_vars = context(runbook, values, incident=incident, requester=requester, variables=variables)
    shown = shown_params(runbook, values)
    needed = APPROVALS_NEEDED[runbook.approval]
    result = Plan(
        runbook=runbook,
        params=values,
        shown_params=shown,
        target=target_value(runbook, values, variables),
        approval=runbook.approval,
        approvals_needed=needed,
    )
    owners = {rb.id: step.id for step in runbook.steps for rb in step.on_failure}
    for step in runbook.all_steps():
        result.steps.append(
            _plan_step(step, ctx_vars, mask, owners.get(step.id), services, incident)
        )
    _interlock(runbook, result, ctx_vars, mask)
    return result


def _interlock(
    runbook: Runbook, result: Plan, ctx_vars: dict[str, Any], mask: Callable[[str], str]
) -> None:
    """A plan whose signing step breaks the double-sign interlock with these params cannot
    start (see :mod:`incidentbot.runbooks.keyguard`)."""
    try:
        rendered = {
            step.id: expr.render_plan(step.with_, ctx_vars)
            for step in runbook.steps
            if keyguard.effect_of(registry.get(step.uses)) is not None
        }
    except expr.ExpressionError:
        return  # the step itself says what is wrong with its inputs
    refused = keyguard.plan_problems(result.steps, rendered, registry)
    for planned in result.steps:
        if planned.id in refused and planned.problem is None:
            planned.problem = mask(refused[planned.id])
            planned.does = f"{planned.does} — {planned.problem}"


def _plan_step(
    step: RollbackStep,
    ctx_vars: dict[str, Any],
    mask: Callable[[str], str],
    rollback_for: str | None,
    services: Services | None,
    incident: IncidentInfo | None = None,
) -> PlannedStep:
    action = _action(step.uses)
    options = ledger_step_options(step)
    try:
        will_run = True if step.when is None else expr.condition_plan(step.when, ctx_vars)
        inputs = expr.render_plan(step.with_, ctx_vars)
    except expr.ExpressionError as exc:
        raise DomainError(f"step {step.id}: {mask(str(exc))}") from None
    problem = None
    actx = ActionContext(
        run_id=None,
        step_id=step.id,
        incident=incident,
        services=services or Services(),
        mask=mask,
    )
    if _has_placeholder(inputs):
        does = f"{step.uses} (some inputs are known only when the run gets here)"
    else:
        try:
            does = mask(action.plan(action.validate(inputs), actx))
        except ValidationError as exc:
            problem = mask(validation_message(exc))
            does = f"{step.uses}: refused: {problem}"
        except EgressRefused as exc:
            problem = mask(str(exc))
            does = f"{step.uses}: refused: {problem}"
    return PlannedStep(
        id=step.id,
        label=step.label,
        uses=step.uses,
        inputs=mask_value(inputs, mask),
        will_run=will_run,
        does=does,
        idempotent=options["idempotent"],
        timeout=options["timeout"],
        wait_until=step.wait_until.check if step.wait_until else None,
        rollback_for=rollback_for,
        problem=problem,
        always=is_cleanup(step),
    )


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return "⟨" in value
    if isinstance(value, dict):
        return any(_has_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_placeholder(v) for v in value)
    return False


def validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'inputs'}: {err['msg']}" for err in exc.errors()
    )


def format_plan(p: Plan) -> list[str]:
    """The plan as plain lines (CLI and Slack share the wording)."""
    lines = [f"Runbook {p.runbook.name}: {p.runbook.description}".rstrip(": ")]
    if p.shown_params:
        lines.append("Params: " + ", ".join(f"{k}={v}" for k, v in p.shown_params.items()))
    if p.target:
        lines.append(
            f"Target (locked while it runs): {shown_target(p.runbook, p.params, p.target)}"
        )
    if p.approval != "none":
        lines.append(f"Approval: {p.approval.replace('-', ' ')}")
    if p.runbook.timeout:
        lines.append(f"Timeout: {format_seconds(p.runbook.timeout)}")
    number = 0
    for s in p.steps:
        if s.rollback_for:
            head = f"   ↩ if {s.rollback_for} fails: {s.label}"
        else:
            number += 1
            head = f"{number:>2}. {s.label}"
        when = {False: " [skipped: condition is false]", None: " [if its condition holds]"}
        always = " [clean-up: runs even if the run fails, times out or is cancelled]"
        lines.append(f"{head} — {s.does}{when.get(s.will_run, '')}{always if s.always else ''}")
        if s.wait_until:
            lines.append(f"      until {s.wait_until}")
    return lines


def ledger_steps(runbook: Runbook, *, announce: bool, approval_timeout: float) -> list[dict]:
    steps: list[dict[str, Any]] = []
    if announce:
        steps.append(
            {
                "name": "Post the run message",
                "action": ANNOUNCE_ACTION,
                "idempotent": True,
                "retry": CHAT_RETRY,
                "timeout": 30.0,
            }
        )
    if runbook.approval != "none":
        steps.append(
            {
                "name": "Approval",
                "action": APPROVAL_ACTION,
                "idempotent": True,
                "park": {
                    "timeout": approval_timeout,
                    "prompt": f"Approve runbook {runbook.name}?",
                },
            }
        )
    index: dict[str, int] = {}
    for step in runbook.steps:
        index[step.id] = len(steps)
        steps.append(_ledger_step(step))
    for step in runbook.steps:
        for rollback in step.on_failure:
            steps.append({**_ledger_step(rollback), "rollback_for": index[step.id]})
    return steps


def _ledger_step(step: RollbackStep) -> dict[str, Any]:
    out = {
        "name": step.label[:200],
        "action": CHAT_STEP_ACTION if _action(step.uses).needs_chat else STEP_ACTION,
        "input": {"step": step.id},
        **ledger_step_options(step),
    }
    if is_cleanup(step):
        out["always"] = True
    return out


def is_cleanup(step: RollbackStep) -> bool:
    """A clean-up step (``always: true``): it runs even when the run fails, times out or is
    cancelled before reaching it."""
    return bool(getattr(step, "always", False))
