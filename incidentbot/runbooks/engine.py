"""Running a runbook: check the params, plan it, and start it as one ledger run.

A runbook run is a ledger run of kind ``runbook:<name>`` whose steps are:

1. ``runbook.announce``: post the run's Slack message (runs started in an incident channel);
2. ``runbook.approval``: parked until the approvers decide (when the runbook asks for approval);
3. one ``runbook.step`` per runbook step, in order;
4. the ``on_failure`` steps, as ledger rollback steps of the step they belong to.

The ledger gives each of them the per-target lock, retries, timeouts, takeover after a crash
and the rule that a non-idempotent step left unfinished stops the run for a person. The
definition and the params are stored with the run (:class:`RunbookRun`), so the run does what
it was started with even if the file changes meanwhile.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, select

from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident
from incidentbot.ledger import service as ledger
from incidentbot.ledger.redact import masker, redact
from incidentbot.runbooks import expr
from incidentbot.runbooks.actions import ActionContext, IncidentInfo, Services, registry
from incidentbot.runbooks.definition import RollbackStep, Runbook, format_seconds
from incidentbot.runbooks.models import RunbookRun
from incidentbot.runbooks.params import coerce

KIND_PREFIX = "runbook:"
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


def _target_value(
    runbook: Runbook, params: Mapping[str, Any], variables: Mapping[str, Any] | None
) -> str | None:
    """The lock target: a param's value, or an expression over params and vars
    (``lb:{{ vars.lb.socket }}``) for a runbook that changes something no param names."""
    target = runbook.target
    if not target:
        return None
    if expr.is_template(target):
        value = expr.render(target, {"params": dict(params), "vars": dict(variables or {})})
        return str(value) if value not in (None, "") else None
    value = params.get(target)
    return None if value in (None, "") else str(value)


def run_kind(name: str) -> str:
    return (KIND_PREFIX + name)[:64]


def is_runbook_kind(kind: str) -> bool:
    return kind.startswith(KIND_PREFIX)


def secret_values(runbook: Runbook, params: Mapping[str, Any]) -> list[str]:
    """The values of the params marked secret (masked wherever the run shows anything)."""
    return [
        str(params[name])
        for name, spec in runbook.params.items()
        if spec.secret and params.get(name) not in (None, "")
    ]


def run_masker(runbook: Runbook, params: Mapping[str, Any]) -> Callable[[str], str]:
    return masker(secret_values(runbook, params))


def mask_value(value: Any, mask: Callable[[str], str]) -> Any:
    """``value`` (JSON-like) with secret params and secret-shaped text masked."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: mask_value(v, mask) for k, v in redact(value).items()}
    if isinstance(value, list | tuple):
        return [mask_value(v, mask) for v in value]
    return value


def incident_info(session: Session, incident: Incident | None) -> IncidentInfo | None:
    if incident is None:
        return None
    assert incident.id is not None
    return IncidentInfo(
        id=incident.id,
        ref=incident.ref,
        title=incident.title,
        severity=incident.severity,
        status=incident.status,
        channel_id=incident.channel_id,
        commander=incident.commander,
        fields=dict(getattr(incident, "fields", None) or {}),
    )


def context(
    runbook: Runbook,
    params: Mapping[str, Any],
    *,
    incident: IncidentInfo | None,
    run_id: int | None = None,
    requester: str | None = None,
    steps: Mapping[str, Any] | None = None,
    variables: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables expressions see (``steps`` is left out of dry runs)."""
    out: dict[str, Any] = {
        "vars": dict(variables or {}),
        "params": dict(params),
        "incident": incident.as_dict() if incident else {},
        "target": _target_value(runbook, params, variables),
        "run": {"id": run_id, "requester": requester},
    }
    if steps is not None:
        out["steps"] = dict(steps)
    return out


# -- plan --------------------------------------------------------------------------------------


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
    shown = {name: spec.format_value(values.get(name)) for name, spec in runbook.params.items()}
    needed = APPROVALS_NEEDED[runbook.approval]
    result = Plan(
        runbook=runbook,
        params=values,
        shown_params=shown,
        target=_target_value(runbook, values, variables),
        approval=runbook.approval,
        approvals_needed=needed,
    )
    owners = {rb.id: step.id for step in runbook.steps for rb in step.on_failure}
    for step in runbook.all_steps():
        result.steps.append(
            _plan_step(step, ctx_vars, mask, owners.get(step.id), services, incident)
        )
    return result


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
            problem = mask(_validation_message(exc))
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
    )


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return "⟨" in value
    if isinstance(value, dict):
        return any(_has_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_placeholder(v) for v in value)
    return False


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'inputs'}: {err['msg']}" for err in exc.errors()
    )


def format_plan(p: Plan) -> list[str]:
    """The plan as plain lines (CLI and Slack share the wording)."""
    lines = [f"Runbook {p.runbook.name}: {p.runbook.description}".rstrip(": ")]
    if p.shown_params:
        lines.append("Params: " + ", ".join(f"{k}={v}" for k, v in p.shown_params.items()))
    if p.target:
        lines.append(f"Target (locked while it runs): {p.target}")
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
        lines.append(f"{head} — {s.does}{when.get(s.will_run, '')}")
        if s.wait_until:
            lines.append(f"      until {s.wait_until}")
    return lines


# -- start -------------------------------------------------------------------------------------


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
    return {
        "name": step.label[:200],
        "action": CHAT_STEP_ACTION if _action(step.uses).needs_chat else STEP_ACTION,
        "input": {"step": step.id},
        **ledger_step_options(step),
    }


def start(
    session: Session,
    settings: Settings,
    p: Plan,
    *,
    key: str,
    requester: str,
    incident: Incident | None,
    source: str,
    channel_id: str | None = None,
) -> RunbookRun:
    """Start the planned run (in the caller's transaction). Same ``key``, same run.

    Raises LockHeld if the target is locked by another run, DomainError if the plan has
    problems."""
    if p.problems:
        raise DomainError("the runbook cannot run as asked: " + "; ".join(p.problems))
    announce = channel_id is not None
    steps = ledger_steps(
        p.runbook,
        announce=announce,
        approval_timeout=settings.runbooks.approval_timeout.total_seconds(),
    )
    run = ledger.start_run(
        session,
        kind=run_kind(p.runbook.name),
        key=key,
        steps=steps,
        target=p.target,
        incident_id=incident.id if incident else None,
        actor=requester,
    )
    existing = session.exec(select(RunbookRun).where(RunbookRun.run_id == run.id)).first()
    if existing is not None:
        return existing
    assert run.id is not None
    row = RunbookRun(
        run_id=run.id,
        runbook=p.runbook.name,
        digest=p.runbook.digest,
        definition=p.runbook.model_dump(mode="json"),
        params=_jsonable(p.params),
        requester=requester,
        incident_id=incident.id if incident else None,
        approval=p.approval,
        approvals_needed=p.approvals_needed,
        source=source,
        channel_id=channel_id,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items()}


_DEFINITIONS: OrderedDict[tuple[int, int, str], Runbook] = OrderedDict()
_DEFINITIONS_MAX = 256
_definitions_lock = threading.Lock()


def definition_of(row: RunbookRun) -> Runbook:
    """The definition a run was started with, parsed once per process (it never changes)."""
    assert row.id is not None
    key = (row.id, row.run_id, row.digest)  # the digest names the definition's content
    with _definitions_lock:
        found = _DEFINITIONS.get(key)
        if found is not None:
            _DEFINITIONS.move_to_end(key)
            return found
    runbook = Runbook.model_validate(row.definition)
    with _definitions_lock:
        _DEFINITIONS[key] = runbook
        while len(_DEFINITIONS) > _DEFINITIONS_MAX:
            _DEFINITIONS.popitem(last=False)
    return runbook


def load(session: Session, run_id: int) -> tuple[RunbookRun, Runbook]:
    """The runbook run of ledger run ``run_id`` and the definition it was started with."""
    row = session.exec(select(RunbookRun).where(RunbookRun.run_id == run_id)).first()
    if row is None:
        raise DomainError(f"run {run_id} is not a runbook run")
    return row, definition_of(row)


def by_id(session: Session, runbook_run_id: int) -> tuple[RunbookRun, Runbook]:
    row = session.get(RunbookRun, runbook_run_id)
    if row is None:
        raise DomainError(f"runbook run {runbook_run_id} does not exist")
    return row, definition_of(row)
