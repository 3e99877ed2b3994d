"""``incidentbot incident ...`` and ``incidentbot timeline``: the lifecycle from a terminal."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from incidentbot import db, policy
from incidentbot.cli.common import AS_OPTION, CliError, actor, console, state
from incidentbot.clock import utcnow
from incidentbot.durations import format_duration, parse_when
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import MILESTONES, Incident

app = typer.Typer(help="Declare and run incidents.", no_args_is_help=True)

REF = typer.Argument(..., help="The incident, e.g. INC-12.", show_default=False)


def _when(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_when(text, utcnow())
    except ValueError as exc:
        raise CliError(f"{what}: {exc}") from None


def _fields(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--field {pair!r}: use name=value, e.g. --field chain=ethereum")
        out[key.strip().lower()] = value
    return out


def _words(words: list[str], what: str) -> str:
    text = " ".join(words).strip()
    if not text:
        raise CliError(f"{what} is empty")
    return text


def _fmt(when: datetime | None, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if when else "-"


@app.command()
def declare(
    ctx: typer.Context,
    title: list[str] = typer.Argument(..., help="What is wrong, in a few words."),
    sev: str = typer.Option(None, "--sev", "-s", help="SEV1..SEV4 (default from policy)."),
    description: str = typer.Option(None, "--description", "-d"),
    field: list[str] = typer.Option([], "--field", "-f", help="name=value, repeatable."),
    commander: str = typer.Option(None, "--commander", help="Default: whoever declares."),
    impact_started: str = typer.Option(None, "--impact-started", help="e.g. '20m ago' or ISO."),
    detected: str = typer.Option(None, "--detected", help="e.g. '10m ago' or ISO."),
    as_user: str = AS_OPTION,
) -> None:
    """Declare an incident."""
    st = state(ctx)
    settings = st.settings
    with db.transaction(st.engine) as s:
        inc = svc.declare(
            s,
            settings,
            title=" ".join(title),
            severity=sev or settings.default_severity,
            actor=actor(as_user),
            description=description,
            fields=_fields(field),
            commander=commander,
            impact_started_at=_when(impact_started, "--impact-started"),
            detected_at=_when(detected, "--detected"),
        )
    console.print(f"Declared {inc.ref} ({inc.severity}): {inc.title}")
    console.print(f"Commander: {inc.commander}   Status: {inc.status}")


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", "-a", help="Include resolved and closed."),
) -> None:
    """List open incidents (newest first)."""
    st = state(ctx)
    with db.transaction(st.engine) as s:
        incidents = svc.list_incidents(s, st.settings, include_terminal=all_)
    if not incidents:
        console.print("No open incidents." if not all_ else "No incidents yet.")
        return
    now = utcnow()
    table = Table("Incident", "Sev", "Status", "Title", "Commander", "Age")
    for inc in incidents:
        table.add_row(
            inc.ref,
            inc.severity,
            inc.status,
            inc.title,
            inc.commander or "-",
            format_duration(now - inc.declared_at),
        )
    console.print(table)


@app.command()
def show(ctx: typer.Context, ref: str = REF) -> None:
    """Show an incident: state, roles, fields, milestones and durations."""
    st = state(ctx)
    tz = ZoneInfo(st.settings.timezone)
    with db.transaction(st.engine) as s:
        inc = svc.get(s, ref)
        roles = svc.active_roles(s, inc)
    console.print(f"[bold]{inc.ref}[/bold] {inc.title}")
    console.print(
        f"Severity: {inc.severity}   Status: {inc.status}   Declared by: {inc.declared_by}"
    )
    if inc.description:
        console.print(f"Description: {inc.description}")
    if inc.fields:
        console.print("Fields: " + ", ".join(f"{k}={v}" for k, v in sorted(inc.fields.items())))
    if inc.channel_name:
        console.print(f"Channel: #{inc.channel_name}")
    console.print("Roles: " + (", ".join(f"{a.role}={a.user}" for a in roles) or "none"))
    table = Table("Milestone", f"Time ({tz.key})", "Since declared")
    for name in MILESTONES:
        when = inc.milestone(name)
        since = format_duration(when - inc.declared_at) if when else "-"
        table.add_row(name.replace("_", " "), _fmt(when, tz), since)
    console.print(table)
    if inc.resolution_summary:
        console.print(f"Resolution: {inc.resolution_summary}")


def _done(inc: Incident, what: str) -> None:
    console.print(f"{inc.ref}: {what}")


@app.command()
def sev(
    ctx: typer.Context,
    ref: str = REF,
    severity: str = typer.Argument(...),
    as_user: str = AS_OPTION,
) -> None:
    """Change the severity."""
    st = state(ctx)
    with db.transaction(st.engine) as s:
        inc = svc.set_severity(s, st.settings, ref, severity, actor=actor(as_user))
    _done(inc, f"severity is now {inc.severity}")


@app.command()
def status(
    ctx: typer.Context,
    ref: str = REF,
    new_status: str = typer.Argument(...),
    as_user: str = AS_OPTION,
) -> None:
    """Change the status (use resolve and close for those)."""
    st = state(ctx)
    with db.transaction(st.engine) as s:
        inc = svc.set_status(s, st.settings, ref, new_status, actor=actor(as_user))
    _done(inc, f"status is now {inc.status}")


@app.command()
def milestone(
    ctx: typer.Context,
    ref: str = REF,
    name: str = typer.Argument(..., help="impact_started, detected, acknowledged, mitigated"),
    when: str = typer.Argument(..., help="'now', '45m ago' or ISO 8601"),
    as_user: str = AS_OPTION,
) -> None:
    """Set a milestone, possibly in the past."""
    st = state(ctx)
    at = _when(when, name)
    assert at is not None
    with db.transaction(st.engine) as s:
        inc = svc.set_milestone(s, st.settings, ref, name, at, actor=actor(as_user))
    _done(inc, f"{name} set to {at.isoformat()}")


@app.command()
def assign(
    ctx: typer.Context,
    ref: str = REF,
    role: str = typer.Argument(...),
    user: str = typer.Argument(...),
    as_user: str = AS_OPTION,
) -> None:
    """Give a role to someone (the previous holder hands over)."""
    st = state(ctx)
    with db.transaction(st.engine) as s:
        inc = svc.assign_role(s, st.settings, ref, role, user, actor=actor(as_user))
    _done(inc, f"{user} is {policy.role(st.settings, role).name}")


@app.command()
def unassign(
    ctx: typer.Context, ref: str = REF, role: str = typer.Argument(...), as_user: str = AS_OPTION
) -> None:
    """Take a role back from whoever holds it."""
    st = state(ctx)
    with db.transaction(st.engine) as s:
        inc = svc.unassign_role(s, st.settings, ref, role, actor=actor(as_user))
    _done(inc, f"nobody is {policy.role(st.settings, role).name} now")


@app.command()
def note(
    ctx: typer.Context,
    ref: str = REF,
    text: list[str] = typer.Argument(...),
    as_user: str = AS_OPTION,
) -> None:
    """Add a note to the timeline."""
    st = state(ctx)
    with db.transaction(st.engine) as s:
        svc.add_note(s, st.settings, ref, _words(text, "the note"), actor=actor(as_user))
    console.print(f"INC-{svc.parse_ref(ref)}: note added")


@app.command()
def resolve(
    ctx: typer.Context,
    ref: str = REF,
    summary: list[str] = typer.Argument(...),
    as_user: str = AS_OPTION,
) -> None:
    """Resolve with a summary of what fixed it."""
    st = state(ctx)
    with db.transaction(st.engine) as s:
        inc = svc.resolve(s, st.settings, ref, " ".join(summary), actor=actor(as_user))
    duration = format_duration(inc.resolved_at - inc.declared_at) if inc.resolved_at else "-"
    _done(inc, f"resolved after {duration}")


@app.command()
def close(ctx: typer.Context, ref: str = REF, as_user: str = AS_OPTION) -> None:
    """Close a resolved incident."""
    st = state(ctx)
    with db.transaction(st.engine) as s:
        inc = svc.close(s, st.settings, ref, actor=actor(as_user))
    _done(inc, "closed")


@app.command()
def reopen(
    ctx: typer.Context,
    ref: str = REF,
    reason: str = typer.Option(None, "--reason"),
    as_user: str = AS_OPTION,
) -> None:
    """Reopen a resolved or closed incident."""
    st = state(ctx)
    with db.transaction(st.engine) as s:
        inc = svc.reopen(s, st.settings, ref, actor=actor(as_user), reason=reason)
    _done(inc, f"reopened, status {inc.status}")


def timeline_cmd(ctx: typer.Context, ref: str = REF) -> None:
    """Show an incident's timeline: time, actor and what changed."""
    st = state(ctx)
    tz = ZoneInfo(st.settings.timezone)
    with db.transaction(st.engine) as s:
        inc = svc.get(s, ref)
        events = svc.timeline(s, inc)
    table = Table(
        "Time", "Actor", "Event", "What", title=f"{inc.ref} {inc.title} (times in {tz.key})"
    )
    for event in events:
        table.add_row(_fmt(event.occurred_at, tz), event.actor, event.kind, event.summary)
    console.print(table)
