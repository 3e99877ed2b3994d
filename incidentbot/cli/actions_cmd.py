"""``incidentbot actions ...``: action items from a terminal, the report, the GitHub export.

The same use cases as ``/incident action`` in Slack (:mod:`incidentbot.usecases.action_items`):
every change goes on the incident's timeline, a refused request prints one line and changes
nothing. Owners are names as typed (or Slack user ids, ``U…``): the command line does not ask
Slack who exists.
"""

from __future__ import annotations

import json
from datetime import date

import typer
from rich.markup import escape
from rich.table import Table

from incidentbot import db
from incidentbot.action_items import fields as item_fields
from incidentbot.action_items import github
from incidentbot.action_items import service as items
from incidentbot.action_items.due import parse_due
from incidentbot.action_items.due import today as team_today
from incidentbot.cli.common import AS_OPTION, CliError, actor, console, state
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.people import Directory
from incidentbot.people.lookup import as_user as typed_user
from incidentbot.usecases import action_items as uc
from incidentbot.usecases.core import Actor, Core

app = typer.Typer(help="Action items: follow-ups of incidents.", no_args_is_help=True)

ITEM = typer.Argument(..., help="The action item's id, e.g. 12.", show_default=False)
IN_INCIDENT = typer.Option(
    None, "--incident", "-i", help="Refuse unless the item belongs to this incident."
)


def _incident(s, ref: str | None) -> Incident | None:  # type: ignore[no-untyped-def]
    return svc.get(s, ref) if ref else None


def _core(ctx: typer.Context) -> Core:
    st = state(ctx)
    return Core(st.settings, st.engine)


def _as(as_user: str | None) -> Actor:
    return Actor(actor(as_user), "cli")


def _owner_name(core: Core, owner: str | None) -> str:
    if not owner:
        return "-"
    with db.transaction(core.engine) as s:
        return Directory.load(s, core.settings.people, [owner])(owner)


def _words(words: list[str], what: str) -> str:
    text = " ".join(words).strip()
    if not text:
        raise CliError(f"{what} is empty")
    return text


def _due(text: str | None, timezone: str) -> date | None:
    return parse_due(text, timezone=timezone) if text is not None else None


@app.command()
def add(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="The incident, e.g. INC-12.", show_default=False),
    text: list[str] = typer.Argument(..., help="What needs doing."),
    owner: str = typer.Option(None, "--owner", "-o", help="Who does it (a name or U… id)."),
    due: str = typer.Option(None, "--due", "-d", help="YYYY-MM-DD, +3d, +2w, today, tomorrow."),
    priority: str = typer.Option(
        None, "--priority", "-p", help=f"{', '.join(item_fields.PRIORITIES)} (default medium)."
    ),
    as_user: str = AS_OPTION,
) -> None:
    """Add an action item to an incident."""
    core, who = _core(ctx), _as(as_user)
    with db.transaction(core.engine) as s:
        owner_id = typed_user(s, owner)
    item = uc.add(core, who, ref, _words(text, "the text"), owner=owner_id,
                  due=_due(due, core.settings.timezone), priority=priority)  # fmt: skip
    assert item is not None
    console.print(f"Added action item #{item.id} to {item.incident_ref}: {escape(item.text)}")
    console.print(
        f"Owner: {escape(_owner_name(core, item.owner))}   "
        f"Due: {item.due.isoformat() if item.due else '-'}   "
        f"Priority: {item.priority}"
    )


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    incident: str = typer.Option(None, "--incident", "-i", help="Only items of INC-n."),
    owner: str = typer.Option(None, "--owner", "-o", help="Only items this person owns."),
    status: str = typer.Option("open", "--status", "-s", help="open, done, wont_do or all."),
    overdue: bool = typer.Option(False, "--overdue", help="Only open items past their due date."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
) -> None:
    """List action items (open ones unless --status says otherwise), by incident."""
    st = state(ctx)
    wanted = None if status.strip().lower() == "all" else item_fields.parse_status(status)
    if overdue and wanted not in (None, item_fields.OPEN):
        raise CliError("--overdue lists open items only: leave out --status or use open")
    with db.transaction(st.engine) as s:
        views = items.list_items(
            s,
            st.settings,
            incident=_incident(s, incident),
            owner=typed_user(s, owner),
            status=wanted,
            overdue=overdue,
        )
        names = Directory.load(s, st.settings.people, [v.item.owner for v in views])
    if as_json:
        typer.echo(json.dumps([v.to_json() for v in views], indent=2))
        return
    if not views:
        console.print("No overdue action items." if overdue else "No action items.")
        return
    today = team_today(st.settings.timezone)
    table = Table(
        "Id", "Incident", "Text", "Owner", "Due", "Priority", "Status",
        title=f"Action items (today is {today.isoformat()} in {st.settings.timezone})",
    )  # fmt: skip
    for v in views:
        i = v.item
        state_text = item_fields.label(i.status)
        if v.overdue:
            state_text = f"open, OVERDUE by {v.days_overdue}d"
        elif i.status == item_fields.WONT_DO and i.status_reason:
            state_text += f": {i.status_reason}"
        if i.external_url:
            state_text += f" ({i.external_url})"
        table.add_row(
            str(i.id),
            v.incident_ref,
            escape(i.text),
            escape(names(i.owner) if i.owner else "-"),
            i.due_date.isoformat() if i.due_date else "-",
            i.priority,
            escape(state_text),
        )
    console.print(table)


@app.command()
def edit(
    ctx: typer.Context,
    item_id: str = ITEM,
    due: str = typer.Option(
        None, "--due", "-d", help="YYYY-MM-DD, +3d, +2w, today, tomorrow; none clears it."
    ),
    priority: str = typer.Option(None, "--priority", "-p", help=", ".join(item_fields.PRIORITIES)),
    text: str = typer.Option(None, "--text", "-t", help="The item's new text."),
    incident: str = IN_INCIDENT,
    as_user: str = AS_OPTION,
) -> None:
    """Change an open action item's due date, priority or text (all given, or none)."""
    core = _core(ctx)
    changes: dict[str, str | date | None] = {}
    if due is not None:
        no_date = due.strip().lower() in ("none", "clear", "-")
        changes["due"] = None if no_date else _due(due, core.settings.timezone)
    if priority is not None:
        changes["priority"] = priority
    if text is not None:
        changes["text"] = text
    if not changes:
        raise CliError("nothing to change: give --due, --priority or --text")
    edited = uc.edit(core, _as(as_user), item_id, changes, incident=incident)
    for change in edited.changes:
        old, new = change.old or "-", change.new or "-"
        console.print(
            f"Action item #{edited.item.id} {change.field}: {escape(new)} (was {escape(old)})"
        )


@app.command()
def done(
    ctx: typer.Context, item_id: str = ITEM, incident: str = IN_INCIDENT, as_user: str = AS_OPTION
) -> None:
    """Mark an action item done."""
    item = uc.done(_core(ctx), _as(as_user), item_id, incident=incident)
    console.print(f"Action item #{item.id} is done: {escape(item.text)}")


@app.command()
def assign(
    ctx: typer.Context,
    item_id: str = ITEM,
    owner: str = typer.Argument(..., help="The new owner (a name or U… id).", show_default=False),
    incident: str = IN_INCIDENT,
    as_user: str = AS_OPTION,
) -> None:
    """Give an action item an owner (or a new one)."""
    core = _core(ctx)
    with db.transaction(core.engine) as s:
        owner_id = typed_user(s, owner) or owner
    item = uc.assign(core, _as(as_user), item_id, owner_id, incident=incident)
    console.print(f"Action item #{item.id} is now owned by {escape(_owner_name(core, item.owner))}")


@app.command()
def wontdo(
    ctx: typer.Context,
    item_id: str = ITEM,
    reason: list[str] = typer.Argument(..., help="Why it will not be done."),
    incident: str = IN_INCIDENT,
    as_user: str = AS_OPTION,
) -> None:
    """Close an action item that will not be done, saying why."""
    why = _words(reason, "the reason")
    item = uc.wont_do(_core(ctx), _as(as_user), item_id, why, incident=incident)
    console.print(f"Action item #{item.id} closed as won't do: {escape(item.status_reason)}")


@app.command()
def reopen(
    ctx: typer.Context, item_id: str = ITEM, incident: str = IN_INCIDENT, as_user: str = AS_OPTION
) -> None:
    """Reopen a done or won't-do action item."""
    item = uc.reopen(_core(ctx), _as(as_user), item_id, incident=incident)
    console.print(f"Action item #{item.id} is open again: {escape(item.text)}")


@app.command()
def export(
    ctx: typer.Context,
    item_id: str = ITEM,
    incident: str = IN_INCIDENT,
    as_user: str = AS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a sentence."),
    again: bool = typer.Option(
        False,
        "--again",
        help="Export even though an earlier export did not finish (after checking GitHub).",
    ),
) -> None:
    """Open an action item as a GitHub issue (once; again, it says where it is)."""
    result = uc.export(_core(ctx), _as(as_user), item_id, incident=incident, again=again)
    if as_json:
        typer.echo(json.dumps(github.describe(result), indent=2))
    elif result.created:
        console.print(f"Exported action item #{result.item_id} to {result.url}")
    else:
        console.print(f"Action item #{result.item_id} is already exported: {result.url}")


@app.command()
def report(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="JSON instead of tables."),
) -> None:
    """Open and overdue action items by owner and by incident."""
    st = state(ctx)
    with db.transaction(st.engine) as s:
        rep = items.report(s, st.settings)
    if as_json:
        typer.echo(json.dumps(rep.to_json(), indent=2))
        return
    when = f"today is {rep.today.isoformat()} in {rep.timezone}"
    if not rep.by_incident:
        console.print(f"No open action items ({when}).")
        return
    console.print(f"{rep.open} open action items, {rep.overdue} overdue ({when}).")
    owners = Table("Owner", "Open", "Overdue", "Overdue items", title="By owner")
    with db.transaction(st.engine) as s:
        names = Directory.load(s, st.settings.people, [t.key for t in rep.by_owner])
    for t in rep.by_owner:
        owners.add_row(
            escape(names(t.key) if t.key else "(nobody)"),
            str(t.open),
            str(t.overdue),
            _late(t),
        )
    console.print(owners)
    incidents = Table("Incident", "Title", "Open", "Overdue", "Overdue items", title="By incident")
    for t in rep.by_incident:
        incidents.add_row(
            t.key or "-", escape(t.title or ""), str(t.open), str(t.overdue), _late(t)
        )
    console.print(incidents)


def _late(t: items.Tally) -> str:
    """``#3 (5d), #7 (1d)``: the overdue items with how many days each is overdue."""
    return ", ".join(f"#{i} ({t.days_overdue.get(i, 0)}d)" for i in t.overdue_items) or "-"
