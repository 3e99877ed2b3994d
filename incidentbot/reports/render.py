"""The report as text (the terminal) and as one standalone HTML page with inline SVG charts.

The HTML template is ``report.html.j2``: the one in ``postmortems.template_dir`` when it has
one (a team's own), else the packaged one. Every value is escaped by Jinja2's autoescape.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import jinja2

from incidentbot.config import Settings
from incidentbot.durations import format_duration
from incidentbot.reports import svg
from incidentbot.reports.stats import GROUP_FIELDS, LABELS, MEANS, Group, Report
from incidentbot.template_files import TEMPLATES

PACKAGED = TEMPLATES  # the top-level templates/ directory, installed with the package
TEMPLATE = "report.html.j2"


def duration(seconds: float | None) -> str:
    return "unknown" if seconds is None else format_duration(timedelta(seconds=round(seconds)))


def _row(g: Group) -> list[str]:
    cells = [g.key, str(g.incidents)]
    for name, _, _ in MEANS:
        m = g.means[name]
        cells.append(f"{duration(m.seconds)} ({m.known})" if m.known else "unknown")
    return cells


def overall_row(report: Report) -> list[str]:
    return _row(report.overall)


def tables(report: Report) -> list[tuple[str, list[list[str]]]]:
    """Titled tables of groups: severity, each field, month."""
    out = [("By severity", [_row(g) for g in report.by_severity])]
    for name in GROUP_FIELDS:
        out.append((f"By {name}", [_row(g) for g in report.by_field.get(name, [])]))
    out.append(("By month", [_row(g) for g in report.by_month]))
    return out


HEADERS = ["", "Incidents", "MTTA (known)", "MTTM (known)", "MTTR (known)"]


def period(report: Report) -> str:
    a = f"{report.since:%Y-%m-%d}" if report.since else "the first incident"
    b = f"{report.until:%Y-%m-%d}" if report.until else "now"
    return f"incidents declared from {a} to {b}"


def charts(report: Report) -> list[Any]:
    sev = [
        svg.Bar(g.key, g.means["mttr"].seconds or 0, duration(g.means["mttr"].seconds), n)
        for n, g in enumerate(report.by_severity)
    ]
    months = [svg.Bar(g.key, g.incidents, str(g.incidents)) for g in report.by_month]
    month_mttr = [
        svg.Bar(g.key, g.means["mttr"].seconds or 0, duration(g.means["mttr"].seconds), 2)
        for g in report.by_month
    ]
    outcome_colour = {"succeeded": 2, "failed": 3, "cancelled": 5, "needs_attention": 1}
    runs = [
        svg.Bar(k.replace("_", " "), v, str(v), outcome_colour.get(k, 0))
        for k, v in report.run_outcomes.items()
    ]
    return [
        svg.bars("MTTR by severity", sev, empty="no incident has both times"),
        svg.bars("Incidents per month", months, empty="no incidents"),
        svg.bars("MTTR per month", month_mttr, empty="no incident has both times"),
        svg.bars("Runbook runs by outcome", runs, empty="no runbook runs"),
    ]


def _environment(settings: Settings) -> jinja2.Environment:
    dirs = [str(PACKAGED)]
    custom = settings.postmortems.template_dir
    if custom is not None and (Path(custom) / TEMPLATE).is_file():
        dirs.insert(0, str(custom))
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(dirs),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def html(settings: Settings, report: Report) -> str:
    template = _environment(settings).get_template(TEMPLATE)
    return template.render(
        r=report,
        period=period(report),
        headers=HEADERS,
        tables=tables(report),
        charts=charts(report),
        labels=LABELS,
        overall=overall_row(report),
        duration=duration,
    )
