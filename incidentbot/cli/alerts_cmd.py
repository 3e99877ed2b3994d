"""``incidentbot alerts ...``: the alerts Alertmanager sent, including those no rule matched.

An alert that matched no routing rule opens no incident; this is where it stays visible.
``deliveries`` shows the webhook requests as received, so a notification whose processing
failed can be found (and Alertmanager's retry seen).
"""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from incidentbot import db
from incidentbot.alerts import queries
from incidentbot.alerts.timeline import describe
from incidentbot.cli.common import console, state

app = typer.Typer(help="Alerts received from Alertmanager.", no_args_is_help=True)

LIMIT = typer.Option(50, "--limit", "-n", min=1, max=queries.MAX_LIMIT, help="At most this many.")


def _fmt(when: datetime | None, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if when else "-"


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    unmatched: bool = typer.Option(False, "--unmatched", help="Only alerts no rule matched."),
    status: str = typer.Option(None, "--status", help="firing or resolved."),
    incident: str = typer.Option(None, "--incident", "-i", help="Only alerts of INC-n."),
    limit: int = LIMIT,
) -> None:
    """List alerts, most recently received first."""
    st = state(ctx)
    tz = ZoneInfo(st.settings.timezone)
    with db.transaction(st.engine) as s:
        views = queries.list_alerts(
            s, unmatched=unmatched, status=status, incident=incident, limit=limit
        )
    if not views:
        console.print("No unmatched alerts." if unmatched else "No alerts.")
        return
    table = Table(
        "Id", "Status", "Alert", "Rule", "Incident", "Started", "Last received", "Times",
        title=f"Alerts (times in {tz.key})",
    )  # fmt: skip
    for view in views:
        a = view.alert
        incident_cell = view.incident_ref or (f"error: {a.error}" if a.error else "-")
        table.add_row(
            str(a.id),
            a.status,
            escape(describe(a)),
            escape(a.rule or "(no rule)"),
            escape(incident_cell),
            _fmt(a.starts_at, tz),
            _fmt(a.last_received_at, tz),
            str(a.received_count),
        )
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    alert_id: int = typer.Argument(..., help="The alert id, as `alerts list` shows it."),
) -> None:
    """Show one alert: labels, annotations, routing and its incident (all redacted)."""
    st = state(ctx)
    tz = ZoneInfo(st.settings.timezone)
    with db.transaction(st.engine) as s:
        view = queries.get_alert(s, alert_id)
    a = view.alert
    lines = [
        ("Alert", f"{a.id} {a.alertname} ({a.status})"),
        ("Fingerprint", a.fingerprint),
        ("Started", _fmt(a.starts_at, tz)),
        ("Ended", _fmt(a.ends_at, tz)),
        ("Received", f"{a.received_count}× (first {_fmt(a.first_received_at, tz)}, "
                     f"last {_fmt(a.last_received_at, tz)})"),
        ("Rule", a.rule or "(no rule matched)"),
        ("Severity", a.severity or "-"),
        ("Service", a.service or "-"),
        ("Incident", view.incident_ref or "-"),
        ("Source", a.generator_url or "-"),
    ]  # fmt: skip
    if a.error:
        lines.append(("Error", a.error))
    for label, value in lines:
        console.print(f"{label + ':':<13}{escape(value)}")
    console.print("Labels:\n" + escape(json.dumps(a.labels, indent=2, sort_keys=True)))
    console.print("Annotations:\n" + escape(json.dumps(a.annotations, indent=2, sort_keys=True)))


@app.command()
def deliveries(
    ctx: typer.Context,
    failed: bool = typer.Option(False, "--failed", help="Only deliveries that failed."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=queries.MAX_LIMIT),
) -> None:
    """List webhook deliveries as received, newest first, with what each one did."""
    st = state(ctx)
    tz = ZoneInfo(st.settings.timezone)
    with db.transaction(st.engine) as s:
        rows = queries.list_deliveries(s, failed=failed, limit=limit)
    if not rows:
        console.print("No failed deliveries." if failed else "No deliveries.")
        return
    table = Table("Id", "Received", "Receiver", "Status", "Alerts", "Outcome")
    for d in rows:
        outcome = d.outcome or ("processing…" if d.processed_at is None else "-")
        truncated = f" +{d.truncated_alerts} truncated" if d.truncated_alerts else ""
        table.add_row(
            str(d.id),
            _fmt(d.received_at, tz),
            escape(d.receiver or "-"),
            d.status + (" (failed)" if d.failed else ""),
            f"{d.alert_count}{truncated}",
            escape(outcome),
        )
    console.print(table)
