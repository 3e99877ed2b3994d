"""``incidentbot runs ...`` and ``incidentbot worker``: watch and steer durable work.

``runs list|show`` read the ledger; ``runs cancel`` and ``runs decide`` call the same use cases
as the Slack buttons (:mod:`incidentbot.usecases.runbooks`), so a runbook run's access rules
apply to them: its requester, the commander or an approver may cancel it; its approval is
decided by the approvers only. ``worker`` runs a worker pool in the foreground until SIGTERM or
SIGINT, then lets each worker finish its current step and hand its run back.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import datetime
from types import FrameType
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from incidentbot import db
from incidentbot.cli.common import AS_OPTION, CliError, actor, console, log_to_stderr, state
from incidentbot.errors import DomainError
from incidentbot.incidents import runs as queries
from incidentbot.ledger.models import PARKED, Run, Step
from incidentbot.ledger.redact import redact_text
from incidentbot.ledger.worker import DEFAULT_LEASE, DEFAULT_POLL, WorkerPool
from incidentbot.modules import import_modules
from incidentbot.people import Directory
from incidentbot.people.render import event_text, ids_in
from incidentbot.runbooks import runtime as runbook_runtime
from incidentbot.usecases import runbooks as uc
from incidentbot.usecases.core import Actor, Core

app = typer.Typer(help="Durable runs: list, inspect, cancel, decide.", no_args_is_help=True)

RUN_ID = typer.Argument(..., help="The run number, as `runs list` shows it.", show_default=False)
log = logging.getLogger("incidentbot.worker")


def _fmt(when: datetime | None, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if when else "-"


def _short(text: str | None, limit: int = 70) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _position(run: Run, step_name: str | None) -> str:
    total = run.step_count
    if step_name is None:
        return f"{total}/{total} done"
    return f"{run.cursor + 1}/{total} {step_name}"


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: str = typer.Option(None, "--status", "-s", help="Only runs in this status."),
    active: bool = typer.Option(False, "--active", help="Only runs not yet settled."),
    incident: str = typer.Option(None, "--incident", "-i", help="Only runs for INC-n."),
    target: str = typer.Option(None, "--target", help="Only runs on this target."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000),
) -> None:
    """List runs, newest first."""
    st = state(ctx)
    tz = ZoneInfo(st.settings.timezone)
    with db.transaction(st.engine) as s:
        rows = queries.list_runs(
            s, status=status, active=active, incident=incident, target=target, limit=limit
        )
    if not rows:
        console.print("No runs.")
        return
    table = Table("Run", "Kind", "Status", "Target", "Incident", "Step", "Updated", "Error")
    for row in rows:
        run = row.run
        table.add_row(
            str(run.id),
            escape(run.kind),
            run.status,
            escape(run.target or "-"),
            row.incident_ref or "-",
            escape(_position(run, row.step_name)),
            _fmt(run.updated_at, tz),
            escape(_short(run.error)),
        )
    console.print(table)


@app.command()
def show(ctx: typer.Context, run_id: int = RUN_ID) -> None:
    """Show a run: where it is, who holds it, and each step with its redacted input/output."""
    st = state(ctx)
    tz = ZoneInfo(st.settings.timezone)
    with db.transaction(st.engine) as s:
        detail = queries.run_detail(s, run_id)
        run = detail.run
        named = [run.created_by, run.cancel_requested_by, *ids_in(run.error or "")]
        for st_ in detail.steps:
            named += [*(st_.decided_by or "").split(", "), *ids_in(st_.error or "")]
        people = Directory.load(s, st.settings.people, named)

    def who(text: str | None) -> str:
        """People by name: the actors of the run's record, and Slack ids in its messages."""
        return event_text(text or "", {"people": [p for p in named if p]}, people)

    console.print(f"[bold]Run {run.id}[/bold] {escape(run.kind)}: {run.status}")
    lines = [
        ("Key", run.idempotency_key),
        ("Incident", detail.incident_ref or "-"),
        ("Target", run.target or "-"),
        ("Started by", who(run.created_by)),
        ("Created", _fmt(run.created_at, tz)),
        ("Finished", _fmt(run.finished_at, tz)),
        ("Owner", f"{run.owner} (lease until {_fmt(run.lease_expires_at, tz)})"
         if run.lease_expires_at else "-"),
        ("Takeovers", str(run.takeovers)),
    ]  # fmt: skip
    if run.cancel_requested_at:
        lines.append(("Cancel", f"requested by {who(run.cancel_requested_by)}"))
    if run.error:
        lines.append(("Error", who(run.error)))
    for label, value in lines:
        console.print(f"{label + ':':<12}{escape(value)}")
    if run.status == PARKED and run.cursor < len(detail.steps):
        step = detail.steps[run.cursor]
        prompt = run.spec["steps"][run.cursor].get("park", {}).get("prompt") or ""
        console.print(
            f"Waiting for a decision on {escape(step.label)} until "
            f"{_fmt(step.deadline_at, tz)} ({tz.key})"
            + (f": {escape(redact_text(prompt))}" if prompt else "")
        )
    table = Table("#", "Step", "Action", "Status", "Tries", "Idem.", "Started", "Finished", "Note")
    specs = run.spec.get("steps", [])
    for step in detail.steps:
        cleanup = step.idx < len(specs) and specs[step.idx].get("always") is True
        table.add_row(
            str(step.number),
            escape(step.name) + (" (clean-up)" if cleanup else ""),
            escape(step.action),
            step.status,
            str(step.attempts),
            "yes" if step.idempotent else "no",
            _fmt(step.started_at, tz),
            _fmt(step.finished_at, tz),
            escape(who(_note(step, tz))),
        )
    console.print(table)
    for step in detail.steps:
        if step.input:
            console.print(f"{step.number} input:  {escape(json.dumps(step.input, sort_keys=True))}")
        if step.output:
            console.print(
                f"{step.number} output: {escape(json.dumps(step.output, sort_keys=True))}"
            )


def _note(step: Step, tz: ZoneInfo) -> str:
    parts: list[str] = []
    if step.decision:
        parts.append(f"{step.decision} by {step.decided_by} at {_fmt(step.decided_at, tz)}")
    elif step.deadline_at:
        parts.append(f"decision due by {_fmt(step.deadline_at, tz)}")
    if step.next_attempt_at and step.status == "pending":
        parts.append(f"next try {_fmt(step.next_attempt_at, tz)}")
    if step.error:
        parts.append(_short(step.error, 200))
    return "; ".join(parts) or "-"


@app.command()
def cancel(
    ctx: typer.Context,
    run_id: int = RUN_ID,
    reason: list[str] = typer.Argument(None, help="Why (recorded on the run)."),
    as_user: str = AS_OPTION,
) -> None:
    """Cancel a run: it stops before its next step and its target lock is released."""
    st = state(ctx)
    who = Actor(actor(as_user), "cli")
    done = uc.cancel(Core(st.settings, st.engine), who, run_id, reason=" ".join(reason or []))
    console.print(escape(done.message))


@app.command()
def decide(
    ctx: typer.Context,
    run_id: int = RUN_ID,
    decision: str = typer.Argument(..., help="approved, rejected, or another word."),
    step: int = typer.Option(None, "--step", min=1, help="Only if the run waits at this step."),
    as_user: str = AS_OPTION,
) -> None:
    """Decide for a parked run. Only the first decision counts; a later one exits 1."""
    st = state(ctx)
    who = Actor(actor(as_user), "cli")
    done = uc.decide(
        Core(st.settings, st.engine), who, run_id, decision, step=None if step is None else step - 1
    )
    console.print(escape(done.message))


def worker_cmd(
    ctx: typer.Context,
    threads: int = typer.Option(2, "--threads", "-t", min=1, max=64, help="Worker threads."),
    lease: float = typer.Option(DEFAULT_LEASE, "--lease", min=0.1, help="Lease in seconds."),
    poll: float = typer.Option(DEFAULT_POLL, "--poll", min=0.01, help="Idle poll, seconds."),
    imports: list[str] = typer.Option(
        [], "--import", help="Module that registers step actions (repeatable)."
    ),
    name: str = typer.Option(None, "--name", help="Worker name (default host:pid)."),
    grace: float = typer.Option(30.0, "--grace", min=0, help="Seconds to finish steps on stop."),
) -> None:
    """Run ledger workers in the foreground until SIGTERM or SIGINT."""
    st = state(ctx)
    log_to_stderr(st.settings.log_level)
    import_modules(imports, "--import")
    engine = st.engine
    # The same effects as `serve` (channel, header, digest, pages, runbook steps and their run
    # messages) when Slack is configured; without Slack, runbook steps only.
    from incidentbot.effect_wiring import Effects

    try:
        effects = Effects.from_settings(st.settings, engine)
    except DomainError as exc:
        raise CliError(str(exc)) from None
    if effects is None:
        runbook_runtime.install(engine, st.settings)
        log.info("Slack is not configured: this worker runs runbook steps only")
    stop = threading.Event()

    def _signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: finishing current steps", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, _signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    pool = WorkerPool(engine, threads=threads, lease=lease, poll=poll, name=name)
    where = engine.url.render_as_string(hide_password=True)
    try:
        pool.start()
        log.info("worker ready: %d thread(s) on %s", threads, where)
        while not stop.wait(0.5):
            pass
    finally:
        clean = pool.stop(timeout=grace)
        if effects is not None:
            effects.unsubscribe()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("worker stopped%s", "" if clean else " (a step was still running)")
