"""``incidentbot report``: response times, runbook runs and action items across incidents, in
the terminal, as JSON, or as one HTML page with charts (``--html FILE``)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from incidentbot.cli.common import CliError, console, state


def _day(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    except ValueError:
        raise CliError(f"{option} {text!r}: use a date such as 2026-01-01") from None


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def report(
    ctx: typer.Context,
    since: str = typer.Option(None, "--since", help="Incidents declared on or after this day."),
    until: str = typer.Option(None, "--until", help="Incidents declared before this day."),
    html: Path = typer.Option(None, "--html", help="Write the report as HTML with charts here."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of tables."),
) -> None:
    """MTTA/MTTM/MTTR by severity, chain, network, component and month; runbook runs and
    their outcomes; action items open and overdue."""
    from incidentbot.reports import render
    from incidentbot.usecases import reports as uc

    start, end = _day(since, "--since"), _day(until, "--until")
    if start and end and end <= start:
        raise CliError(f"--until {until} is not after --since {since}")
    if html is not None and (html.is_dir() or not html.parent.is_dir()):
        raise CliError(f"--html {html}: not a file in an existing directory")
    st = state(ctx)
    rep = uc.report(st.core, since=start, until=end)
    if html is not None:
        page = render.html(st.settings, rep)
        try:
            html.write_text(page, encoding="utf-8", newline="\n")
        except OSError as exc:
            raise CliError(f"--html {html}: cannot write: {exc.strerror}") from None
        typer.echo(f"Wrote the report ({len(page.encode())} bytes) to {html}")
        return
    if as_json:
        typer.echo(json.dumps(rep.to_json(), indent=2))
        return
    o = rep.overall
    console.print(
        f"{_n(o.incidents, 'incident')} ({o.resolved} resolved), {render.period(rep)}; "
        f"{_n(rep.runs, 'runbook run')}; action items: {rep.items_open} open, "
        f"{rep.items_overdue} overdue."
    )
    for label in render.LABELS.values():
        console.print(f"  {label}")
    for title, rows in [("All incidents", [render.overall_row(rep)]), *render.tables(rep)]:
        table = Table(*render.HEADERS, title=title)
        for row in rows:
            table.add_row(*(escape(c) for c in row))
        console.print(table)
    runs = Table("Runbook", "Runs", "Outcomes", title="Runbook runs")
    for t in rep.runbooks:
        outcomes = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in t.outcomes.items())
        runs.add_row(escape(t.runbook), str(t.runs), outcomes)
    console.print(runs)
