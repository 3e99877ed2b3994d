"""``incidentbot incident ...``: the lifecycle from a terminal (the read-only commands, and
``incidentbot timeline``, are :mod:`incidentbot.cli.incident_views`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import typer

from incidentbot import db
from incidentbot.cli import incident_views
from incidentbot.cli.common import AS_OPTION, CliError, actor, console, state
from incidentbot.cli.incident_follow import follow, say_queued
from incidentbot.cli.incident_impact import ask_impact_start
from incidentbot.cli.incident_views import REF
from incidentbot.clock import utcnow
from incidentbot.durations import format_duration, parse_when
from incidentbot.people import Directory
from incidentbot.usecases import incidents as uc
from incidentbot.usecases import paging as paging_uc
from incidentbot.usecases import postmortems as pm_uc
from incidentbot.usecases.core import Actor

app = typer.Typer(help="Declare and run incidents.", no_args_is_help=True)


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
    service: str = typer.Option(None, "--service", help="The service to page (by policy)."),
    private: bool = typer.Option(
        False, "--private", help="A private channel; left out of the digest and public reports."
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Follow the channel and pages until a running bot has done them."
    ),
    timeout: float = typer.Option(60.0, "--timeout", help="How long --wait waits, in seconds."),
    as_user: str = AS_OPTION,
) -> None:
    """Declare an incident: its channel, announcement and page are queued for the bot."""
    st = state(ctx)
    out = uc.declare(
        st.core,
        _actor(as_user),
        title=" ".join(title),
        severity=sev,
        description=description,
        fields=_fields(field),
        commander=commander,
        impact_started_at=_when(impact_started, "--impact-started"),
        detected_at=_when(detected, "--detected"),
        service=service,
        private=private,
    )
    console.print(
        f"Declared {out.ref} ({out.severity}){' (private)' if out.private else ''}: {out.title}",
        markup=False,
        emoji=False,
    )
    with db.read(st.engine) as s:
        names = Directory.load(s, st.settings.people, [out.commander])
    console.print(
        f"Commander: {names(out.commander)}   Status: {out.status}", markup=False, emoji=False
    )
    if out.paged:
        console.print(f"Paging {out.paged} on-call.", markup=False, emoji=False)
    if wait and not (out.channel_queued or out.paged):
        console.print(
            "Nothing to follow: Slack is not configured here (INCIDENTBOT_SLACK_BOT_TOKEN), "
            "so no channel was queued."
        )
    elif out.channel_queued or out.paged:
        if wait:
            follow(st.engine, out.ref, timeout=timeout)
        else:
            say_queued(st.engine, out.ref)


# The read-only commands, registered here so that `incident --help` lists them in this order.
app.command("list")(incident_views.list_cmd)
app.command()(incident_views.show)


def _done(ref: str, what: str) -> None:
    # What was typed (a field's value, a role's holder) is printed as typed, never as markup.
    console.print(f"{ref}: {what}", markup=False, emoji=False)


def _actor(as_user: str | None) -> Actor:
    return Actor(actor(as_user), "cli")


@app.command()
def sev(
    ctx: typer.Context,
    ref: str = REF,
    severity: str = typer.Argument(...),
    as_user: str = AS_OPTION,
) -> None:
    """Change the severity."""
    st = state(ctx)
    out = uc.set_severity(st.core, _actor(as_user), ref, severity)
    _done(out.ref, f"severity is now {out.new}")


@app.command()
def status(
    ctx: typer.Context,
    ref: str = REF,
    new_status: str = typer.Argument(...),
    as_user: str = AS_OPTION,
) -> None:
    """Change the status (use resolve and close for those)."""
    st = state(ctx)
    out = uc.set_status(st.core, _actor(as_user), ref, new_status)
    _done(out.ref, f"status is now {out.new}")


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
    out = uc.set_milestone(st.core, _actor(as_user), ref, name, at)
    _done(out.ref, f"{name} set to {out.at.isoformat()}")


@app.command()
def field(
    ctx: typer.Context,
    ref: str = REF,
    name: str = typer.Argument(..., help="A configured field, e.g. validators"),
    value: list[str] = typer.Argument(None, help="Its new value, e.g. 4-7,12"),
    clear: bool = typer.Option(False, "--clear", help="Clear the field instead"),
    as_user: str = AS_OPTION,
) -> None:
    """Set or clear an incident field after the declare (checked as at declare)."""
    if clear == bool(value):
        raise CliError("give a value or --clear (not both)")
    st = state(ctx)
    out = uc.set_field(st.core, _actor(as_user), ref, name, None if clear else " ".join(value))
    shown = "cleared" if out.new is None else f"is now {out.new}"
    _done(out.ref, f"{out.field} {shown} (was {out.old if out.old is not None else 'unset'})")


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
    out = uc.assign(st.core, _actor(as_user), ref, role, user)
    _done(out.ref, f"{out.user} is {out.role}")


@app.command()
def unassign(
    ctx: typer.Context, ref: str = REF, role: str = typer.Argument(...), as_user: str = AS_OPTION
) -> None:
    """Take a role back from whoever holds it."""
    st = state(ctx)
    out = uc.unassign(st.core, _actor(as_user), ref, role)
    _done(out.ref, f"nobody is {out.role} now")


@app.command()
def note(
    ctx: typer.Context,
    ref: str = REF,
    text: list[str] = typer.Argument(...),
    as_user: str = AS_OPTION,
) -> None:
    """Add a note to the timeline."""
    st = state(ctx)
    out = uc.note(st.core, _actor(as_user), ref, _words(text, "the note"))
    _done(out.ref, "note added")


@app.command()
def resolve(
    ctx: typer.Context,
    ref: str = REF,
    summary: list[str] = typer.Argument(...),
    impact_started: str = typer.Option(
        None,
        "--impact-started",
        help="When the impact started, if not recorded yet: '20m ago', '14:05', "
        "'same as detected'. Asked for on a terminal when missing.",
    ),
    as_user: str = AS_OPTION,
) -> None:
    """Resolve with a summary of what fixed it."""
    st = state(ctx)
    if impact_started is not None:  # refused before anything changes
        pm_uc.check_impact_start(st.core, ref, impact_started)
    out = uc.resolve(st.core, _actor(as_user), ref, " ".join(summary))
    duration = format_duration(out.duration) if out.duration is not None else "-"
    _done(out.ref, f"resolved after {duration}")
    if out.pages_resolving:
        console.print(f"Resolving {out.pages_resolving} PagerDuty incident(s).")
    ask_impact_start(st.core, _actor(as_user), out.ref, impact_started)


@app.command()
def close(ctx: typer.Context, ref: str = REF, as_user: str = AS_OPTION) -> None:
    """Close a resolved incident."""
    st = state(ctx)
    out = uc.close(st.core, _actor(as_user), ref)
    _done(out.ref, "closed")


@app.command()
def reopen(
    ctx: typer.Context,
    ref: str = REF,
    reason: str = typer.Option(None, "--reason"),
    as_user: str = AS_OPTION,
) -> None:
    """Reopen a resolved or closed incident."""
    st = state(ctx)
    out = uc.reopen(st.core, _actor(as_user), ref, reason)
    _done(out.ref, f"reopened, status {out.status}")


@app.command()
def update(
    ctx: typer.Context,
    ref: str = REF,
    text: list[str] = typer.Argument(..., help="What changed, what is next."),
    as_user: str = AS_OPTION,
) -> None:
    """Post a status update (the incident channel and the digest channel, by the bot)."""
    st = state(ctx)
    out = uc.update(st.core, _actor(as_user), ref, _words(text, "the update"))
    where = f": posting it in the channel and #{out.digest_channel}" if out.digest_channel else ""
    _done(out.ref, f"status update recorded{where}")


@app.command()
def page(
    ctx: typer.Context,
    ref: str = REF,
    service: str = typer.Argument(None, help="The service to page (default from policy)."),
    message: list[str] = typer.Option(None, "--message", "-m", help="What on-call should know."),
    link: str = typer.Option(
        None, "--link", help="Link an existing PagerDuty incident instead (its URL or number)."
    ),
    as_user: str = AS_OPTION,
) -> None:
    """Page a service's on-call for the incident (a running bot sends the page), or link a
    PagerDuty incident opened elsewhere (--link)."""
    st = state(ctx)
    if link is not None:
        if service or message:
            raise CliError("--link takes no service or message")
        from incidentbot.pagerduty_adapter import pager_for  # the SDK only when linking

        core = replace(st.core, pager=pager_for(st.settings))
        linked = paging_uc.link(core, _actor(as_user), ref, link)
        what = f"PagerDuty #{linked.number} ({linked.service}, {linked.status})"
        _done(linked.ref, f"{what} {'linked' if linked.new else 'was already linked'}")
        return
    text = " ".join(message or []).strip() or None
    out = uc.page(st.core, _actor(as_user), ref, service, text)
    if not out.new:
        _done(out.ref, f"{out.service} is already paged ({out.status})")
        return
    _done(out.ref, f"paging {out.service} on-call (queued for the bot)")
