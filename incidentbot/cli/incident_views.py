"""The read-only incident commands: ``incidentbot incident list`` and ``show``, and
``incidentbot timeline``. What people typed is printed as typed, never as terminal markup."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import typer
from rich.table import Table
from rich.text import Text

from incidentbot import db
from incidentbot.cli.common import console, state
from incidentbot.clock import utcnow
from incidentbot.durations import format_duration
from incidentbot.incidents import listing
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import MILESTONES
from incidentbot.people import Directory
from incidentbot.people.render import event_people, event_text, ids_in

REF = typer.Argument(..., help="The incident, e.g. INC-12.", show_default=False)


def _fmt(when: datetime | None, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if when else "-"


def list_cmd(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", "-a", help="Include resolved and closed."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many."),
    before: int | None = typer.Option(
        None, "--before", min=1, help="Only incidents numbered below this (the next page)."
    ),
) -> None:
    """List open incidents (newest first), a page at a time."""
    st = state(ctx)
    with db.read(st.engine) as s:
        found = listing.list_page(
            s, st.settings, include_terminal=all_, limit=limit + 1, before=before, details=True
        )
        names = Directory.load(s, st.settings.people, [i.commander for i in found[:limit]])
    incidents, more = found[:limit], len(found) > limit
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
            Text(inc.title),
            Text(names(inc.commander)) if inc.commander else "-",
            format_duration(now - inc.declared_at) if inc.declared_at else "-",
        )
    console.print(table)
    if more:
        flags = " --all" if all_ else ""
        console.print(f"More: incidentbot incident list{flags} --before {incidents[-1].number}")


def show(ctx: typer.Context, ref: str = REF) -> None:
    """Show an incident: state, roles, fields, milestones and durations."""
    st = state(ctx)
    tz = ZoneInfo(st.settings.timezone)
    with db.transaction(st.engine) as s:
        inc = svc.get(s, ref)
        roles = svc.active_roles(s, inc)
        names = Directory.load(s, st.settings.people, [inc.declared_by, *(a.user for a in roles)])
    # Titles, names, fields and texts are printed as typed, never as terminal markup.
    console.print(Text(inc.ref, style="bold") + Text(f" {inc.title}"))
    plain = {"markup": False, "emoji": False}
    console.print(
        f"Severity: {inc.severity}   Status: {inc.status}   Declared by: {names(inc.declared_by)}",
        **plain,
    )
    if inc.description:
        console.print(f"Description: {inc.description}", **plain)
    if inc.fields:
        fields = ", ".join(f"{k}={v}" for k, v in sorted(inc.fields.items()))
        console.print(f"Fields: {fields}", **plain)
    if inc.channel_name:
        console.print(f"Channel: #{inc.channel_name}", **plain)
    held = ", ".join(f"{a.role}={names(a.user)}" for a in roles) or "none"
    console.print(f"Roles: {held}", **plain)
    table = Table("Milestone", f"Time ({tz.key})", "Since declared")
    for name in MILESTONES:
        when = inc.milestone(name)
        since = format_duration(when - inc.declared_at) if when else "-"
        table.add_row(name.replace("_", " "), _fmt(when, tz), since)
    console.print(table)
    if inc.resolution_summary:
        console.print(f"Resolution: {inc.resolution_summary}", **plain)


def timeline_cmd(ctx: typer.Context, ref: str = REF) -> None:
    """Show an incident's timeline: time, actor and what changed."""
    st = state(ctx)
    tz = ZoneInfo(st.settings.timezone)
    with db.read(st.engine) as s:
        inc = svc.get(s, ref)
        events = svc.timeline(s, inc)
        names = Directory.load(
            s,
            st.settings.people,
            [a for e in events for a in (e.actor, *event_people(e.data), *ids_in(e.summary))],
        )
    table = Table(
        "Time", "Actor", "Event", "What", title=Text(f"{inc.ref} {inc.title} (times in {tz.key})")
    )
    for event in events:
        table.add_row(
            _fmt(event.occurred_at, tz),
            Text(names(event.actor)),
            event.kind,
            Text(event_text(event.summary, event.data, names)),
        )
    console.print(table)
