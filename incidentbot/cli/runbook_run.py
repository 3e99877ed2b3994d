"""``incidentbot runbook plan|run|approve|resume``: runbooks outside Slack.

``run`` starts the run on the ledger and also works it with workers in this process, printing
each step as it changes (read from the database, so steps a bot worker executes show too).
Interrupting the command hands the run back: any worker (the bot's) continues it.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any

import typer

from incidentbot import db
from incidentbot.cli.common import AS_OPTION, CliError, actor, console, state
from incidentbot.cli.runbook_cmd import app, load_catalog
from incidentbot.errors import DomainError
from incidentbot.ledger.worker import WorkerPool
from incidentbot.people import Directory
from incidentbot.people.render import swap
from incidentbot.runbooks import runtime
from incidentbot.runbooks import view as views
from incidentbot.runbooks.definition import format_seconds
from incidentbot.runbooks.params import ParamError, describe
from incidentbot.usecases import runbooks as uc
from incidentbot.usecases.core import Actor, Core

MARK = {
    "waiting": "·",
    "running": "…",
    "retrying": "↻",
    "done": "✓",
    "failed": "✗",
    "skipped": "→",
    "unknown": "?",
}

PARAMS_ARG = typer.Argument(None, help="Params as name=value.", show_default=False)
INCIDENT_OPTION = typer.Option(None, "--incident", "-i", help="The incident it is run for.")


def _out(text: str) -> None:
    console.print(text, markup=False, emoji=False, highlight=False, soft_wrap=True)


def _params(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CliError(f"params are name=value pairs; {pair!r} is not one", code=2)
        if name.strip() in out:
            raise CliError(f"the param {name.strip()!r} is given twice", code=2)
        out[name.strip()] = value
    return out


def _core(ctx: typer.Context, *, database: bool = True) -> Core:
    """The use cases' core. ``database=False``: an engine that is never checked (nor the
    database created), for a plan without an incident, which reads nothing from it."""
    st = state(ctx)
    engine = st.engine if database else st.raw_engine
    return Core(st.settings, engine, catalog=lambda: load_catalog(st.settings))


def _usage(core: Core, name: str, exc: ParamError) -> CliError:
    lines = [f"{p}: {m}" for p, m in exc.problems]
    lines += ["params:"] + [f"  {describe(n, p)}" for n, p in uc.runbook(core, name).params.items()]
    return CliError("cannot run " + name + ":\n  " + "\n  ".join(lines), code=2)


@app.command("plan")
def plan_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The runbook."),
    params: list[str] = PARAMS_ARG,
    incident: str = INCIDENT_OPTION,
    as_user: str = AS_OPTION,
) -> None:
    """Show what a run would do, step by step, without doing any of it."""
    core = _core(ctx, database=incident is not None)  # a plan works before `db upgrade`
    who = Actor(actor(as_user), "cli")
    try:
        planned = uc.plan(core, who, name, _params(params), incident_ref=incident)
    except ParamError as exc:
        raise _usage(core, name, exc) from None
    _out("Plan (nothing was run):")
    for line in planned.lines:
        _out(line)
    if planned.problems:
        raise CliError("; ".join(planned.problems))


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The runbook."),
    params: list[str] = PARAMS_ARG,
    incident: str = INCIDENT_OPTION,
    as_user: str = AS_OPTION,
    threads: int = typer.Option(2, "--threads", min=1, max=16, help="Worker threads here."),
    detach: bool = typer.Option(False, "--detach", help="Start it and return at once."),
) -> None:
    """Start a run and follow its steps live (exit 0 if it succeeds).

    The access rules apply as in Slack: a rule naming users admits the --as (or login) name
    only if it lists it."""
    st = state(ctx)
    core = _core(ctx)
    who = Actor(actor(as_user), "cli")
    pairs = _params(params)
    runtime.install(
        st.engine, st.settings, progress=lambda rid, step, line: _progress(rid, step, line)
    )
    try:
        started = uc.run(
            core,
            who,
            name,
            pairs,
            incident_ref=incident,
            key=f"cli:{who.id}:{name}:{time.time_ns()}",
            post_in_channel=False,  # this command follows the run itself
        )
    except ParamError as exc:
        raise _usage(core, name, exc) from None
    except DomainError as exc:
        raise CliError(_named(core, str(exc), exc.people)) from None
    run_id = started.run_id
    where = f" for {started.incident_ref}" if started.incident_ref else ""
    _out(f"Run {run_id}: {started.runbook}{where}")
    if detach:
        _out(f"Follow it with `incidentbot runs show {run_id}`.")
        return
    raise typer.Exit(_follow(st, run_id, threads))


def _follow(st: Any, run_id: int, threads: int) -> int:
    pool = WorkerPool(
        st.engine,
        threads=threads,
        lease=st.settings.worker_lease,
        poll=0.2,
        name=f"cli-run-{run_id}",
        only_run=run_id,  # this run only: the bot's own runs stay with the bot
    ).start()
    stop = threading.Event()

    def _signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGINT, _signal)
    shown: dict[int, str] = {}
    said_waiting = False
    try:
        while True:
            with db.transaction(st.engine) as s:
                view = views.load(s, run_id)
            for step in view.steps:
                if step.rollback and step.status in ("waiting", "skipped"):
                    continue  # a rollback that was not needed
                key = f"{step.status}:{step.attempts}"
                if shown.get(step.index) != key and step.status != "waiting":
                    shown[step.index] = key
                    took = (
                        "" if step.elapsed is None else f" ({format_seconds(round(step.elapsed))})"
                    )
                    detail = f" — {step.detail}" if step.detail else ""
                    _out(
                        f"  {MARK.get(step.status, ' ')} {step.label}: {step.status}{took}{detail}"
                    )
            if view.status == "awaiting_approval" and not said_waiting:
                said_waiting = True
                _out(
                    f"Waiting for approval: `incidentbot runbook approve {run_id} --as NAME` "
                    "(or the buttons in Slack)"
                )
            if view.ended or view.status == "needs_attention":
                return _verdict(view)
            if stop.wait(0.3):
                _out(f"Stopped following run {run_id}; it carries on in any running worker.")
                return 130
    finally:
        signal.signal(signal.SIGINT, previous)
        pool.stop(timeout=10)


def _progress(rid: int, step: str, line: str) -> None:
    _out(f"    run {rid} {step}: {line}")


def _verdict(view: views.RunView) -> int:
    took = format_seconds(round(view.elapsed))
    if view.status == "succeeded":
        _out(f"Run {view.run_id} succeeded in {took}.")
        return 0
    _out(f"Run {view.run_id} {view.status.replace('_', ' ')} after {took}: {view.error or ''}")
    if view.status == "needs_attention":
        _out(
            f"Check the target, then `incidentbot runbook resume {view.run_id}` (run the step "
            f"again), `--skip` (it happened), or `incidentbot runs cancel {view.run_id}`."
        )
    return 1


@app.command("approve")
def approve_cmd(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="The run."),
    reject: bool = typer.Option(False, "--reject", help="Reject instead of approving."),
    as_user: str = AS_OPTION,
) -> None:
    """Approve (or reject) a run that waits for approval."""
    core = _core(ctx)
    who = Actor(actor(as_user), "cli")
    decide = uc.reject if reject else uc.approve
    try:
        decided = decide(core, who, run_id)
    except DomainError as exc:
        raise CliError(_named(core, str(exc), exc.people)) from None
    _out(_named(core, decided.summary, decided.people))


def _named(core: Core, text: str, people: tuple[str, ...]) -> str:
    """Core text with the people it names by stored identity shown by their names."""
    if not people:
        return text
    with db.transaction(core.engine) as s:
        names = Directory.load(s, core.settings.people, people)
    return swap(text, list(people), names.name)


@app.command("resume")
def resume_cmd(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="The run that needs attention."),
    skip: bool = typer.Option(False, "--skip", help="Skip the step in doubt (it happened)."),
    as_user: str = AS_OPTION,
) -> None:
    """Continue a run that needs attention: run the step in doubt again, or skip it."""
    core = _core(ctx)
    who = Actor(actor(as_user), "cli")
    try:
        done = uc.resume(core, who, run_id, skip=skip)
    except DomainError as exc:
        raise CliError(_named(core, str(exc), exc.people)) from None
    _out(done.message)


def register() -> None:
    """The commands are registered on ``runbook_cmd.app`` when this module is imported."""
