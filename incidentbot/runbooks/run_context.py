"""What a runbook run's expressions see, and how its secrets are kept out of what it shows.

:func:`context` builds the variables ``when`` and ``with`` are rendered against (``vars``,
``params``, ``incident``, ``target``, ``run`` and, once the run is under way, ``steps``);
:func:`run_masker`, :func:`mask_value`, :func:`shown_params` and :func:`shown_target` hide the
params marked secret (and secret-shaped text) in everything a plan or a run displays, wherever
their values turn up: in another param, the target, inputs, outputs and messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlmodel import Session

from incidentbot.incidents.models import Incident
from incidentbot.ledger.masker import masker
from incidentbot.ledger.redact import redact
from incidentbot.runbooks import expr
from incidentbot.runbooks.actions import IncidentInfo
from incidentbot.runbooks.definition import Runbook


def target_value(
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


def secret_values(runbook: Runbook, params: Mapping[str, Any]) -> list[str]:
    """The values of the params marked secret (masked wherever the run shows anything)."""
    return [
        str(params[name])
        for name, spec in runbook.params.items()
        if spec.secret and params.get(name) not in (None, "")
    ]


def run_masker(runbook: Runbook, params: Mapping[str, Any]) -> Callable[[str], str]:
    return masker(secret_values(runbook, params))


def shown_params(runbook: Runbook, params: Mapping[str, Any]) -> dict[str, str]:
    """Each param as people see it: a secret one as ``***``, any other through the run's
    masker, so a secret value also passed to a non-secret param is masked there too."""
    mask = run_masker(runbook, params)
    return {
        name: spec.format_value(params.get(name))
        if spec.secret
        else mask(spec.format_value(params.get(name)))
        for name, spec in runbook.params.items()
    }


def shown_target(runbook: Runbook, params: Mapping[str, Any], target: str | None) -> str | None:
    """The lock target as people see it (the run's secret values masked in it)."""
    return run_masker(runbook, params)(target) if target else target


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
        "target": target_value(runbook, params, variables),
        "run": {"id": run_id, "requester": requester},
    }
    if steps is not None:
        out["steps"] = dict(steps)
    return out
