"""Starting a runbook run as one ledger run, and loading a run's row and definition.

A runbook run is a ledger run of kind ``runbook:<name>`` whose steps are the ones
:func:`incidentbot.runbooks.planning.ledger_steps` builds: the announcement and the approval
where the run has them, one step per runbook step, and the ``on_failure`` steps as rollback
steps.

The ledger gives each of them the per-target lock, retries, timeouts, takeover after a crash
and the rule that a non-idempotent step left unfinished stops the run for a person. The
definition and the params are stored with the run (:class:`RunbookRun`), so the run does what
it was started with even if the file changes meanwhile.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import defer
from sqlmodel import Session, select

from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident
from incidentbot.ledger import service as ledger
from incidentbot.runbooks.definition import Runbook
from incidentbot.runbooks.models import RunbookRun
from incidentbot.runbooks.planning import Plan, ledger_steps

KIND_PREFIX = "runbook:"


def run_kind(name: str) -> str:
    return (KIND_PREFIX + name)[:64]


def is_runbook_kind(kind: str) -> bool:
    return kind.startswith(KIND_PREFIX)


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
    return cached_definition((row.id, row.run_id, row.digest), lambda: row.definition)


def cached_definition(key: tuple[int, int, str], read: Callable[[], Any]) -> Runbook:
    """The definition of the run keyed (runbook run id, ledger run id, digest); ``read`` gives
    its stored JSON, called only when this process has not parsed it yet."""
    with _definitions_lock:
        found = _DEFINITIONS.get(key)
        if found is not None:
            _DEFINITIONS.move_to_end(key)
            return found
    runbook = Runbook.model_validate(read())
    with _definitions_lock:
        _DEFINITIONS[key] = runbook
        while len(_DEFINITIONS) > _DEFINITIONS_MAX:
            _DEFINITIONS.popitem(last=False)
    return runbook


def load(session: Session, run_id: int) -> tuple[RunbookRun, Runbook]:
    """The runbook run of ledger run ``run_id`` and the definition it was started with."""
    # The definition is read only when this process has not parsed it yet (definition_of).
    stmt = (
        select(RunbookRun).where(RunbookRun.run_id == run_id).options(defer(RunbookRun.definition))  # type: ignore[arg-type]
    )
    row = session.exec(stmt).first()
    if row is None:
        raise DomainError(f"run {run_id} is not a runbook run")
    return row, definition_of(row)


def by_id(session: Session, runbook_run_id: int) -> tuple[RunbookRun, Runbook]:
    row = session.get(RunbookRun, runbook_run_id)
    if row is None:
        raise DomainError(f"runbook run {runbook_run_id} does not exist")
    return row, definition_of(row)
