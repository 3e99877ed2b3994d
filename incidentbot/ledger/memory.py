"""What a step read before its first attempt, kept in the ledger for the attempts after it.

An idempotent step that changes something and reports what it was before (``previous``
states of a load balancer's servers) must read that once, before its side effect: an attempt
after a crash would otherwise read the half-applied state and report it as the original one,
and an undo built on it would put things back wrong. :func:`recall` returns what an earlier
attempt of the step kept; :func:`keep` records what the first attempt read, in its own commit,
before the attempt touches anything.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from incidentbot.ledger.actions import RetryableError
from incidentbot.ledger.models import STEP_STARTED
from incidentbot.ledger.redact import redact
from incidentbot.ledger.service import get_step

KEY = "remembered"  # under the step row's input, next to what the spec gave it


def recall(session: Session, run_id: int, index: int) -> dict[str, Any] | None:
    """What an earlier attempt of step ``index`` kept, or None."""
    found = (get_step(session, run_id, index).input or {}).get(KEY)
    return dict(found) if isinstance(found, dict) else None


def keep(
    session: Session, run_id: int, index: int, attempt: int, data: dict[str, Any]
) -> dict[str, Any]:
    """Record ``data`` (redacted) for step ``index`` unless an attempt already did; returns
    what is kept. Only the attempt the step is started for may write: one that lost the run
    to another worker gets RetryableError and writes nothing."""
    step = get_step(session, run_id, index)
    if step.status != STEP_STARTED or step.attempts != attempt:
        raise RetryableError(
            f"{step.label}: attempt {attempt} is no longer the running one (now attempt "
            f"{step.attempts}, {step.status}); nothing recorded"
        )
    found = (step.input or {}).get(KEY)
    if isinstance(found, dict):
        return dict(found)
    kept = redact(data)
    step.input = {**(step.input or {}), KEY: kept}  # a new dict: the JSON column sees the change
    session.add(step)
    return dict(kept)
