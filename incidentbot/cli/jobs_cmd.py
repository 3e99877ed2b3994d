"""``incidentbot jobs list`` and ``incidentbot scheduler``: scheduled jobs.

``jobs list`` shows each job's schedule, next run time (from its trigger) and recent outcomes
(from ``scheduler_run``). ``scheduler`` runs the scheduler in the foreground until SIGTERM or
SIGINT; with several replicas one leads and the others stand by (see docs/scheduling.md).
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime
from types import FrameType
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.engine import Engine

from incidentbot import clock, db
from incidentbot.cli.common import CliError, console, log_to_stderr, state
from incidentbot.config import Settings
from incidentbot.modules import import_modules
from incidentbot.scheduler.builtin import Services, build_scheduler, builtin_jobs
from incidentbot.scheduler.core import resolve_jobs
from incidentbot.scheduler.models import SchedulerRun
from incidentbot.scheduler.registry import registered

app = typer.Typer(help="Scheduled jobs: list them and their recent runs.", no_args_is_help=True)
log = logging.getLogger("incidentbot.scheduler")

IMPORTS = typer.Option([], "--import", help="Module that registers jobs (repeatable).")


def _fmt(when: datetime | None, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z") if when else "-"


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    imports: list[str] = IMPORTS,
    recent: int = typer.Option(5, "--recent", "-n", min=1, max=100, help="Outcomes per job."),
) -> None:
    """Each job: schedule, next run, last runs (newest first)."""
    st = state(ctx)
    import_modules(imports, "--import")
    tz = ZoneInfo(st.settings.timezone)
    import_modules(st.settings.scheduler.imports, "scheduler.imports")
    registry = {**registered(), **builtin_jobs(st.settings, None)}
    jobs = {j.name: j for j in resolve_jobs(st.settings.scheduler, st.settings.timezone,
                                            registry, strict=False)}  # fmt: skip
    now = clock.utcnow()
    with db.transaction(st.engine) as s:
        names = set(jobs) | set(s.execute(select(SchedulerRun.job).distinct()).scalars())
        history: dict[str, list[SchedulerRun]] = {}
        for name in names:
            rows = (
                s.execute(
                    select(SchedulerRun)
                    .where(SchedulerRun.job == name)  # type: ignore[arg-type]
                    .order_by(SchedulerRun.slot.desc())
                    .limit(recent)  # type: ignore[attr-defined]
                )
                .scalars()
                .all()
            )
            history[name] = list(rows)
    if not names:
        console.print("No jobs.")
        return
    table = Table()
    for column in ("Job", "Schedule", "Enabled", "Next run", "Last slot", "Recent"):
        table.add_column(column, no_wrap=True)
    table.add_column("Last failure", min_width=12)
    for name in sorted(names):
        job = jobs.get(name)
        rows = history.get(name, [])
        if job is None:
            schedule, enabled, nxt = "not registered", "-", "-"
        else:
            schedule = job.schedule
            enabled = "yes" if job.enabled else "no"
            nxt = _fmt(job.first_slot_from(now), tz) if job.runnable else "-"
        recent_outcomes = " ".join(r.outcome or "running" for r in rows) or "-"
        error = next((r.error for r in rows if r.outcome == "failed" and r.error), None)
        table.add_row(escape(name), escape(schedule), enabled, nxt,
                      _fmt(rows[0].slot, tz) if rows else "-", recent_outcomes,
                      escape(" ".join(error.split())[:80]) if error else "-")  # fmt: skip
    console.print(table)


def _services(settings: Settings, engine: Engine) -> Services | None:
    """The adapters the built-in jobs need. Without a Slack token they cannot run, and a
    scheduler leading without them would starve them on every replica: refused, unless they
    are all disabled in ``scheduler.jobs``."""
    token = settings.slack_bot_token
    if token is not None and token.get_secret_value():
        # Slack and PagerDuty: only here
        from incidentbot.pagerduty_adapter import pager_for
        from incidentbot.slack.chat import SlackChat
        from incidentbot.slack.handoff_commands import HandoffCommands

        chat = SlackChat(token.get_secret_value(), base_url=settings.slack.api_url)
        handoffs = HandoffCommands(settings, engine, chat, pager_for(settings))
        return Services(settings, engine, chat, handoffs=handoffs)
    builtin = builtin_jobs(settings, None)
    jobs = resolve_jobs(settings.scheduler, settings.timezone, {**registered(), **builtin})
    enabled = [j.name for j in jobs if j.name in builtin and j.runnable]
    if enabled:
        raise CliError(
            f"INCIDENTBOT_SLACK_BOT_TOKEN is not set, and the built-in jobs need Slack "
            f"({', '.join(enabled)}): set it, run the scheduler in `incidentbot serve` (it does "
            "by default), or disable them under scheduler.jobs"
        )
    return None


def scheduler_cmd(
    ctx: typer.Context,
    imports: list[str] = IMPORTS,
    name: str = typer.Option(None, "--name", help="Scheduler name (default host:pid)."),
    grace: float = typer.Option(30.0, "--grace", min=0, help="Seconds to finish a job on stop."),
) -> None:
    """Run the scheduler in the foreground until SIGTERM or SIGINT (one replica leads)."""
    st = state(ctx)
    log_to_stderr(st.settings.log_level)
    import_modules(imports, "--import")
    engine = st.engine
    sched = build_scheduler(st.settings, engine, _services(st.settings, engine), name=name)
    jobs = list(sched.jobs.values())
    stop = threading.Event()

    def _signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping the scheduler", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, _signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        sched.start()
        runnable = [j.name for j in jobs if j.runnable]
        log.info("scheduler %s ready: %d job(s): %s", sched.name, len(runnable),
                 ", ".join(runnable) or "none")  # fmt: skip
        while not stop.wait(0.5):
            pass
    finally:
        clean = sched.stop(timeout=grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("scheduler %s stopped%s", sched.name, "" if clean else " (a job was still running)")
