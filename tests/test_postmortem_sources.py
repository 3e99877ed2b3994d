"""What a postmortem says about where its times came from, how the incident was detected, the
language of every human text it quotes, and overdue action items (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from incidentbot import db
from incidentbot.action_items import service as items
from incidentbot.alerts import service as alerts
from incidentbot.incidents import service as svc
from incidentbot.postmortems.document import build
from incidentbot.postmortems.render import render, render_document
from tests.test_alerts_support import T0, alert, notification, settings_for


def rendered(engine, settings, fmt: str = "md", today: date | None = None) -> str:
    with db.transaction(engine) as s:
        inc = svc.get(s, "INC-1")
        if today is None:
            return render(s, settings, inc, fmt).text
        return render_document(settings, build(s, settings, inc, today=today), fmt)


def test_an_incident_from_an_alert_is_detected_by_that_alert(engine, tmp_path):
    settings = settings_for(tmp_path)
    first = alert("RpcEndpointDown", instance="rpc-1:8545", chain="ethereum", starts_at=T0)
    out = alerts.ingest(engine, settings, notification([first]))
    assert out.declared
    md = rendered(engine, settings)
    assert "| Detected | " in md
    detected = next(line for line in md.splitlines() if line.startswith("| Detected |"))
    assert detected.endswith("| the first alert that fired |")
    impact = next(line for line in md.splitlines() if line.startswith("| Impact started |"))
    assert impact.endswith("| the first alert that fired |")
    detection = md.split("## Detection", 1)[1].split("## Resolution", 1)[0]
    assert "Alerts that fired:" in detection and "RpcEndpointDown" in detection
    assert "rpc-1:8545" in detection
    assert "detected: the first alert that fired" in md  # the metrics say it too


def test_a_reported_incident_is_detected_when_declared_and_says_so(engine, settings):
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="RPC lags", severity="SEV2", actor="alice")
    md = rendered(engine, settings)
    detected = next(line for line in md.splitlines() if line.startswith("| Detected |"))
    assert "the declare: no alert fired, a person reported it (default)" in detected
    impact = next(line for line in md.splitlines() if line.startswith("| Impact started |"))
    assert impact.endswith("| not recorded | not recorded |")
    assert "No alert fired: alice declared it at" in md
    # what is unknown stays unknown, and says which time is missing
    assert "| Time to detect | impact started → detected | unknown (no impact started time) |" in md


def test_blaming_words_in_notes_and_action_items_are_flagged(engine, settings):
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="RPC lags", severity="SEV2", actor="alice")
        svc.add_note(s, settings, "INC-1", "Bob broke the config on rpc-1", actor="dana")
        svc.add_note(s, settings, "INC-1", "peers back at 50 on rpc-1", actor="bob")
        items.add(s, settings, "INC-1", "Find out why carol forgot to drain rpc-1", actor="alice")
    md = rendered(engine, settings)
    page = rendered(engine, settings, "html")
    check = md.split("## Language check", 1)[1].split("## Action items", 1)[0]
    assert "- Timeline, note by dana at " in check and "“Bob broke”" in check
    assert "- Action item 1: “forgot to” in “Find out why carol forgot to drain rpc-1”" in check
    assert "peers back at 50" not in check
    assert "Language check: 2 passages may read as blaming people" in md
    assert "Timeline, note by dana at" in page and "Bob broke" in page


def test_an_overdue_action_item_says_by_how_many_days(engine, settings):
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="RPC lags", severity="SEV2", actor="alice")
        when = datetime(2025, 3, 11, 12, 0, tzinfo=UTC)  # the day they were written down
        items.add(s, settings, "INC-1", "Alert on stuck heads", actor="alice",
                  due=date(2025, 3, 18), now=when)  # fmt: skip
        items.add(s, settings, "INC-1", "Snapshot schedule", actor="alice",
                  due=date(2025, 3, 25), now=when)  # fmt: skip
    day = date(2025, 3, 21)
    md = rendered(engine, settings, today=day)
    assert "| 2025-03-18 | medium | **overdue by 3 days** |" in md
    assert "| 2025-03-25 | medium | open |" in md
    page = rendered(engine, settings, "html", today=day)
    assert '<td class="overdue">overdue by 3 days</td>' in page
    md = rendered(engine, settings, today=day - timedelta(days=2))
    assert "| 2025-03-18 | medium | **overdue by 1 day** |" in md
