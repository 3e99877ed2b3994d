"""``incidentbot postmortem ...``: render, write, review and publish blameless postmortems.

Names come from the people the bot has met in Slack (the ``person`` table); the command line
does not call Slack, so someone the bot never looked up shows as their id. Warnings (blaming
language, milestones out of order) go to stderr, the document to stdout or ``--out``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table
from sqlmodel import col, select

from incidentbot import db
from incidentbot.cli.common import AS_OPTION, CliError, actor, console, state
from incidentbot.clock import utcnow
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.postmortems import impact_numbers, lifecycle
from incidentbot.postmortems.contents import Document, ImpactNumber
from incidentbot.postmortems.document import build
from incidentbot.postmortems.models import PUBLISHED, Postmortem
from incidentbot.postmortems.render import check_format, render_document
from incidentbot.usecases import postmortems as uc
from incidentbot.usecases.core import Actor, Core

app = typer.Typer(
    help="Blameless postmortems: render, edit, review, publish.", no_args_is_help=True
)

REF = typer.Argument(..., help="The incident, e.g. INC-12.", show_default=False)


def _warn(doc: Document) -> None:
    """The language check's findings and milestone problems, one line each on stderr."""
    for problem in doc.order_problems:
        typer.echo(f"warning: milestones out of order: {problem}", err=True)
    for finding in doc.findings:
        typer.echo(f"warning: {finding.line_text()}", err=True)


def _format_for(fmt: str | None, out: Path | None) -> str:
    if fmt is not None:
        return check_format(fmt)
    if out is not None and out.suffix.lower() in (".html", ".htm"):
        return "html"
    return "md"


def _check_out(out: Path) -> None:
    """Refuse an --out that cannot be written as is: no directory is ever created."""
    parent = out.parent
    if not parent.is_dir():
        raise CliError(f"--out {out}: the directory {parent} does not exist: create it first")
    if out.is_dir():
        raise CliError(f"--out {out}: is a directory: name the file to write")


@app.command()
def render(
    ctx: typer.Context,
    ref: str = REF,
    fmt: str = typer.Option(
        None, "--format", "-f", help="md or html (default: from --out's suffix, else md)."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
) -> None:
    """Render the postmortem (Markdown or standalone HTML); nothing is saved."""
    st = state(ctx)
    chosen = _format_for(fmt, out)
    if out is not None:
        _check_out(out)
    with db.transaction(st.engine) as s:
        doc = build(s, st.settings, svc.get(s, ref))
    text = render_document(st.settings, doc, chosen)
    _warn(doc)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8", newline="\n")
    except OSError as exc:
        raise CliError(f"--out {out}: cannot write: {exc.strerror}") from None
    typer.echo(f"{doc.ref}: wrote the postmortem ({chosen}, {len(text.encode())} bytes) to {out}")


def _read_text(text: str | None, file: str | None, clear: bool) -> str | None:
    given = [name for name, value in (("--text", text), ("--file", file)) if value is not None]
    if clear:
        given.append("--clear")
    if len(given) != 1:
        what = " and ".join(given) if given else "none of them"
        raise CliError(f"give exactly one of --text, --file or --clear with --section ({what})")
    if clear:
        return None
    if text is not None:
        return text
    assert file is not None
    if file == "-":
        return sys.stdin.read()
    path = Path(file)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"--file {file}: no such file") from None
    except UnicodeDecodeError:
        raise CliError(f"--file {file}: not UTF-8 text") from None
    except OSError as exc:
        raise CliError(f"--file {file}: cannot read: {exc.strerror}") from None


@app.command()
def edit(
    ctx: typer.Context,
    ref: str = REF,
    section: str = typer.Option(
        None,
        "--section",
        "-s",
        help="summary, impact, trigger, detection, resolution, what_went_well, "
        "what_went_wrong, where_we_got_lucky, contributing_factors, or a section of "
        "postmortems.extra_sections.",
    ),
    text: str = typer.Option(None, "--text", "-t", help="The section's new text."),
    file: str = typer.Option(None, "--file", help="Read the text from a file ('-': stdin)."),
    clear: bool = typer.Option(False, "--clear", help="Empty the section."),
    owner: str = typer.Option(None, "--owner", help="Who owns the postmortem."),
    as_user: str = AS_OPTION,
) -> None:
    """Write a section people fill in (replacing its text), or set the owner."""
    st = state(ctx)
    if section is None and (text is not None or file is not None or clear):
        raise CliError("--text, --file and --clear need --section")
    if section is None and owner is None:
        raise CliError(
            "nothing to change: give --section (with --text, --file or --clear) or --owner"
        )
    key = lifecycle.section_key(section, st.settings) if section is not None else None
    body = _read_text(text, file, clear) if key is not None else None
    done = uc.edit(Core(st.settings, st.engine), Actor(actor(as_user), "cli"), ref,
                   section=key, text=body, owner=owner)  # fmt: skip
    if done.owner is not None:
        typer.echo(f"{done.ref} postmortem: owner is {done.owner}")
    if done.section is not None:
        what = "cleared" if done.cleared else "updated"
        status = lifecycle.STATUS_LABELS[done.status]
        typer.echo(f"{done.ref} postmortem: {done.section} {what} ({status})")
        for finding in done.findings:
            typer.echo(f"warning: {finding.line_text()}", err=True)


def _number_option(spec: impact_numbers.Number) -> Any:
    return typer.Option(None, spec.option, help=f"{spec.label} ({spec.hint}).")


@app.command()
def impact(
    ctx: typer.Context,
    ref: str = REF,
    requests_failed: str = _number_option(impact_numbers.BY_KEY["requests_failed"]),
    users: str = _number_option(impact_numbers.BY_KEY["users_affected"]),
    validators: str = _number_option(impact_numbers.BY_KEY["validators_affected"]),
    degraded: str = _number_option(impact_numbers.BY_KEY["degraded"]),
    blocks_behind: str = _number_option(impact_numbers.BY_KEY["blocks_behind"]),
    missed_slots: str = _number_option(impact_numbers.BY_KEY["missed_slots"]),
    clear: list[str] = typer.Option(
        None, "--clear", help="Forget a number (e.g. --clear users); may be repeated."
    ),
    as_user: str = AS_OPTION,
) -> None:
    """Set the impact in numbers (shown in the postmortem's Impact section with who typed
    them); with no option, show them and where each came from."""
    st = state(ctx)
    given = {
        "requests_failed": requests_failed,
        "users_affected": users,
        "validators_affected": validators,
        "degraded": degraded,
        "blocks_behind": blocks_behind,
        "missed_slots": missed_slots,
    }
    changes: dict[str, str | None] = {k: v for k, v in given.items() if v is not None}
    for name in clear or []:
        key = impact_numbers.number_key(name)
        if key in changes:
            raise CliError(f"{BY_OPTION[key]} and --clear {name}: give one of them")
        changes[key] = None
    core = Core(st.settings, st.engine)
    if not changes:
        with db.transaction(st.engine) as s:
            doc = build(s, st.settings, svc.get(s, ref))
        _show_impact(doc.ref, doc.impact_numbers)
        return
    try:
        done = uc.edit(core, Actor(actor(as_user), "cli"), ref, impact=changes)
    except uc.ImpactError as exc:
        raise CliError(
            "; ".join(f"{BY_OPTION[k]}: {m}" for k, m in exc.errors.items())
            + " (nothing was saved)"
        ) from None
    _show_impact(done.ref, list(done.impact))


BY_OPTION = {n.key: n.option for n in impact_numbers.NUMBERS}


def _show_impact(ref: str, rows: list[ImpactNumber]) -> None:
    for n in rows:
        if n.state == "missing":
            typer.echo(f"{ref} impact: {n.label.lower()}: not given")
        else:
            typer.echo(f"{ref} impact: {n.label.lower()}: {n.value} ({n.source})")


@app.command()
def status(
    ctx: typer.Context,
    ref: str = REF,
    new_status: str = typer.Argument(..., help="draft, in_review or published."),
    as_user: str = AS_OPTION,
) -> None:
    """Move the postmortem: draft → in_review → published (or back one step)."""
    st = state(ctx)
    changed = uc.change_status(
        Core(st.settings, st.engine), Actor(actor(as_user), "cli"), ref, new_status
    )
    if changed.published is not None:
        _published(changed.published)
        return
    typer.echo(
        f"{changed.ref} postmortem: {lifecycle.STATUS_LABELS[changed.old].lower()} → "
        f"{lifecycle.STATUS_LABELS[changed.new].lower()}"
    )


@app.command()
def publish(ctx: typer.Context, ref: str = REF, as_user: str = AS_OPTION) -> None:
    """Write the Markdown and HTML to postmortems.publish_dir and mark it published."""
    st = state(ctx)
    _published(uc.publish(Core(st.settings, st.engine), Actor(actor(as_user), "cli"), ref))


def _published(done: uc.Published) -> None:
    _warn(done.document)
    again = " again" if done.again else ""
    typer.echo(f"{done.ref} postmortem published{again}:")
    typer.echo(f"  {done.markdown}")
    typer.echo(f"  {done.html}")


@app.command()
def check(ctx: typer.Context, ref: str = REF) -> None:
    """Only the blameless-language check of the written sections; exits 1 when it finds
    something."""
    st = state(ctx)
    with db.transaction(st.engine) as s:
        doc = build(s, st.settings, svc.get(s, ref))
    if not doc.sections_written:
        typer.echo(f"{doc.ref}: no section is written yet; nothing to check")
        return
    if not doc.findings:
        typer.echo(f"{doc.ref}: no blaming language found in {doc.sections_written} section(s)")
        return
    for finding in doc.findings:
        typer.echo(finding.line_text())
        typer.echo(f"    in: {finding.excerpt}")
    n = len(doc.findings)
    typer.echo(f"{doc.ref}: {n} passage{'s' if n != 1 else ''} may read as blaming", err=True)
    raise typer.Exit(1)


@app.command("list")
def list_cmd(ctx: typer.Context) -> None:
    """Every postmortem: status, whether it is required, when it is due, how much is written."""
    st = state(ctx)
    with db.transaction(st.engine) as s:
        rows = list(
            s.exec(
                select(Postmortem, Incident)
                .where(Postmortem.incident_id == Incident.id)
                .order_by(col(Incident.number).desc())
            )
        )
    if not rows:
        console.print("No postmortems yet.")
        return
    day = utcnow().astimezone(ZoneInfo(st.settings.timezone)).date()
    keys = [x.key for x in lifecycle.sections_for(st.settings)]
    table = Table("Incident", "Sev", "Title", "Postmortem", "Required", "Due", "Owner", "Written")
    for pm, inc in rows:
        due = pm.due_date.isoformat() if pm.due_date else "-"
        if pm.due_date and pm.status != PUBLISHED and pm.due_date < day:
            due += " (overdue)"
        written = sum(1 for k in keys if (pm.sections or {}).get(k))
        table.add_row(
            inc.ref,
            inc.severity,
            escape(inc.title),
            pm.status,
            "yes" if pm.required else "no",
            due,
            escape(pm.owner or "-"),
            f"{written}/{len(keys)}",
        )
    console.print(table)
