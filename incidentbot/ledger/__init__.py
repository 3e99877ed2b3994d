"""Durable work: a run ledger that survives crashes, retries failures and never repeats a
harmful step. See ``docs/ledger.md``.

Typical use::

    with db.transaction(engine) as s:
        run = ledger.start_run(s, kind="restart-node", key=f"restart:{click_id}",
                               target="rpc-2", incident_id=inc.id, actor="slack:U1",
                               steps=[{"name": "restart geth", "action": "lab.restart",
                                       "input": {"node": "rpc-2"}}])
    pool = ledger.WorkerPool(engine, threads=2).start()
"""

from incidentbot.ledger.actions import (
    ActionRegistry,
    Decision,
    NeedsAttentionError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
    StepContext,
    action,
    classify,
    registry,
)
from incidentbot.ledger.control import DecisionResult, cancel, decide, resume
from incidentbot.ledger.events import LedgerEvent, on_transition, subscribe
from incidentbot.ledger.leases import claim_next, fence
from incidentbot.ledger.models import Run, Step, TargetLock
from incidentbot.ledger.redact import add_redactor, add_sensitive_keys, redact, redact_text
from incidentbot.ledger.service import (
    LeaseLost,
    LockHeld,
    RunNotFound,
    get_by_key,
    get_run,
    get_steps,
    start_run,
)
from incidentbot.ledger.spec import ParkSpec, RetryPolicy, StepSpec
from incidentbot.ledger.worker import Worker, WorkerPool

__all__ = [
    "ActionRegistry",
    "Decision",
    "DecisionResult",
    "LeaseLost",
    "LedgerEvent",
    "LockHeld",
    "NeedsAttentionError",
    "OutcomeUnknownError",
    "ParkSpec",
    "PermanentError",
    "RetryPolicy",
    "RetryableError",
    "Run",
    "RunNotFound",
    "Step",
    "StepContext",
    "StepSpec",
    "TargetLock",
    "Worker",
    "WorkerPool",
    "action",
    "add_redactor",
    "add_sensitive_keys",
    "cancel",
    "claim_next",
    "classify",
    "decide",
    "fence",
    "get_by_key",
    "get_run",
    "get_steps",
    "on_transition",
    "redact",
    "redact_text",
    "registry",
    "resume",
    "start_run",
    "subscribe",
]
