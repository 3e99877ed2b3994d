"""What a step attempt is and how it ended: read when the step is marked started
(:class:`Attempt`), handed back by the worker when the action returns (:data:`Outcome`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from incidentbot.ledger.actions import Decision, Verdict
from incidentbot.ledger.spec import RetryPolicy


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
