"""Every runbook step on the incident's timeline, written in the step's own transaction.

Installed as a ledger transition hook: a step that started, finished, failed or is retried is
on the timeline if and only if the ledger recorded it, crash or not. Outputs and errors arrive
already masked (the runbook step masks the run's secret params; the ledger masks anything
secret-shaped).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, select

from incidentbot.clock import utcnow
from incidentbot.incidents.models import TimelineEvent
from incidentbot.ledger.events import LedgerEvent
from incidentbot.ledger.models import Run, Step
from incidentbot.ledger.redact import redact, redact_strings, redact_text
from incidentbot.runbooks import engine, planning, run_context
from incidentbot.runbooks.definition import format_seconds
from incidentbot.runbooks.models import RunbookRun

ACTOR = "incidentbot"
OUTPUT_CHARS = 300


def _short(output: dict[str, Any]) -> str:
    text = json.dumps(redact(output), sort_keys=True, default=str)
    return text if len(text) <= OUTPUT_CHARS else text[: OUTPUT_CHARS - 1] + "…"


RECORDED = frozenset(
    {
        "run.created",
        "run.parked",
        "run.decided",
        "run.rolling_back",
        "run.cleaning_up",
        "run.resumed",
        "run.taken_over",
        "run.succeeded",
        "run.failed",
        "run.cancelled",
        "run.needs_attention",
        "step.started",
        "step.succeeded",
        "step.retrying",
        "step.failed",
        "step.skipped",
    }
)


def wants_transition(ev: LedgerEvent) -> bool:
    """The events that may reach the timeline (checked before any database work)."""
    return (
        ev.incident_id is not None
        and ev.kind in RECORDED
        and engine.is_runbook_kind(ev.run_kind)
        and not (ev.kind == "step.skipped" and not ev.data.get("actor"))
        and not (ev.kind == "run.decided" and ev.data.get("decision") != "expired")
    )


def record_transition(session: Session, ev: LedgerEvent) -> None:
    """The ledger transition hook (see :func:`incidentbot.ledger.on_transition`)."""
    if ev.incident_id is None or not engine.is_runbook_kind(ev.run_kind):
        return
    assert ev.incident_id is not None
    row = _run_row(session, ev.run_id)
    if row is None:
        return
    line = _describe(session, ev, row)
    if line is None:
        return
    kind, actor, summary, data = line
    now = utcnow()
    # One prepared Core INSERT, no ORM instance or unit of work (two per step), masked as
    # every timeline event is (incidents.records.record).
    session.connection().execute(
        _INSERT,
        {
            "incident_id": ev.incident_id,
            "occurred_at": now,
            "recorded_at": now,
            "kind": kind[:64],  # the columns' lengths: the INSERT cannot fail on them
            "actor": actor[:128],
            "summary": redact_text(summary),
            "data": redact_strings({"run_id": ev.run_id, "runbook": row.runbook, **data}),
            "source_key": None,
        },
    )


_INSERT = insert(TimelineEvent.__table__)  # type: ignore[attr-defined]


# What a transition needs to know about its run and steps never changes once written: keep it
# per process instead of reading it for every event.
_ROWS: dict[tuple[str, int], RunbookRun] = {}
_STEPS: dict[tuple[str, int, int], tuple[str, str, str]] = {}
_CACHE_MAX = 4096


def _where(session: Session) -> str:
    return str(session.get_bind().engine.url)  # one process may use several databases (tests)


def _run_row(session: Session, run_id: int) -> RunbookRun | None:
    key = (_where(session), run_id)
    row = _ROWS.get(key)
    if row is None:
        row = session.exec(select(RunbookRun).where(RunbookRun.run_id == run_id)).first()
        if row is None:
            return None
        row = RunbookRun(**row.model_dump())  # a copy outside the session
        if len(_ROWS) >= _CACHE_MAX:
            _ROWS.clear()
        _ROWS[key] = row
    return row


def _step_of(session: Session, run_id: int, idx: int) -> tuple[str, str, str] | None:
    """(action, runbook step id, name) of a ledger step. The first miss reads every step of
    the run at once: one read per run, not one per step."""
    where = _where(session)
    found = _STEPS.get((where, run_id, idx))
    if found is None:
        rows = session.exec(
            select(Step.idx, Step.action, Step.input, Step.name).where(Step.run_id == run_id)
        ).all()
        if len(_STEPS) + len(rows) >= _CACHE_MAX:
            _STEPS.clear()
        for row_idx, action, inputs, step_name in rows:
            _STEPS[(where, run_id, row_idx)] = (
                action,
                str((inputs or {}).get("step", "")),
                step_name,
            )
        found = _STEPS.get((where, run_id, idx))
    return found


def _describe(
    session: Session, ev: LedgerEvent, row: RunbookRun
) -> tuple[str, str, str, dict[str, Any]] | None:
    name = f"{row.runbook} (run {ev.run_id})"
    if ev.kind == "run.created":
        runbook = engine.definition_of(row)
        params = run_context.shown_params(runbook, row.params)
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        target = run_context.shown_target(runbook, row.params, ev.target)
        target = f" on {target}" if target else ""
        extra = f" with {shown}" if shown else ""
        return (
            "runbook.started",
            row.requester,
            f"Runbook {name} requested{target}{extra}",
            {"params": params},
        )
    if ev.kind.startswith("step.") and ev.step_index is not None:
        return _step_line(session, ev, name)
    if ev.kind == "run.parked":
        need = "two people" if row.approvals_needed == 2 else "the commander"
        deadline = ev.data.get("deadline", "")[11:19]
        return (
            "runbook.approval_requested",
            ACTOR,
            f"Runbook {name} waits for approval by {need} until {deadline} UTC",
            {},
        )
    if ev.kind == "run.decided" and ev.data.get("decision") == "expired":
        return ("runbook.approval_expired", ACTOR, f"Approval of {name} expired", {})
    if ev.kind == "run.rolling_back":
        return (
            "runbook.rolling_back",
            ACTOR,
            f"Runbook {name}: {ev.error}; running its rollback steps",
            {},
        )
    if ev.kind == "run.cleaning_up":
        return (
            "runbook.cleaning_up",
            ACTOR,
            f"Runbook {name}: {ev.error}; running its clean-up steps",
            {},
        )
    if ev.kind == "run.resumed":
        who = ev.data.get("actor", "someone")
        return (
            "runbook.resumed",
            who,
            f"{who} resumed {name}: the step in doubt runs again",
            {"people": [who]},
        )
    if ev.kind == "run.taken_over":
        return (
            "runbook.taken_over",
            ACTOR,
            f"Runbook {name} continues on another worker after its worker stopped",
            {},
        )
    if ev.kind in ("run.succeeded", "run.failed", "run.cancelled", "run.needs_attention"):
        outcome = ev.kind.split(".", 1)[1].replace("_", " ")
        run = session.get(Run, ev.run_id)
        took = ""
        if run is not None and run.started_at is not None:
            took = f" after {format_seconds(round((ev.at - run.started_at).total_seconds()))}"
        why = f": {ev.error}" if ev.error and ev.kind != "run.succeeded" else ""
        return (
            f"runbook.{ev.kind.split('.', 1)[1]}",
            ACTOR,
            f"Runbook {name} {outcome}{took}{why}",
            {},
        )
    return None


def _step_line(
    session: Session, ev: LedgerEvent, name: str
) -> tuple[str, str, str, dict[str, Any]] | None:
    assert ev.step_index is not None
    found = _step_of(session, ev.run_id, ev.step_index)
    if found is None or found[0] not in planning.STEP_ACTIONS:
        return None
    _action, step_id, step_name = found
    label = f"{name} step {step_id!r}"
    data: dict[str, Any] = {"step": step_id, "attempt": ev.attempt}
    if ev.kind == "step.started":
        again = f" (attempt {ev.attempt})" if ev.attempt and ev.attempt > 1 else ""
        return ("runbook.step_started", ACTOR, f"{label} ({step_name}) started{again}", data)
    if ev.kind == "step.succeeded":
        output = dict(ev.data.get("output") or {})
        data["output"] = output
        if output.get("skipped") is True:
            return ("runbook.step_skipped", ACTOR, f"{label} skipped: {output.get('reason')}", data)
        return ("runbook.step_succeeded", ACTOR, f"{label} done: {_short(output)}", data)
    if ev.kind == "step.retrying":
        delay = ev.data.get("delay") or 0
        return (
            "runbook.step_retrying",
            ACTOR,
            f"{label} failed, retrying in {delay:.0f}s: {ev.error}",
            data,
        )
    if ev.kind == "step.failed":
        return ("runbook.step_failed", ACTOR, f"{label} failed: {ev.error}", data)
    if ev.kind == "step.skipped" and ev.data.get("actor"):
        who = ev.data["actor"]
        data["people"] = [who]
        return ("runbook.step_skipped", who, f"{who} skipped {label}", data)
    return None
