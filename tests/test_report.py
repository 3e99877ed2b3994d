"""``incidentbot report``: response times across incidents by severity, by chain/network/
component and by month, runbook runs and their outcomes, action items open and overdue; and the
HTML page with its charts, rendered by headless Chromium (screenshot kept in ``artifacts/``).

Incidents are written with their own times (no wall clock): the means are exact.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from incidentbot import db
from incidentbot.action_items import service as items
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.ledger.worker import WorkerPool
from incidentbot.reports import render, stats
from incidentbot.runbooks import engine as rb_engine
from incidentbot.runbooks import planning, run_context, runtime
from incidentbot.runbooks.actions import Services, registry
from incidentbot.runbooks.loader import load_dirs
from tests.lab_support import wait_for
from tests.test_postmortem_browser import ARTIFACTS, Outline, chromium, png_pixels, run_chromium

T = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
PROBE = """
name: probe-{name}
description: A check that {verdict}
approval: none
steps:
  - id: check
    name: Check the node
    uses: check.that
    with: {{that: {that}, otherwise: "the node is behind"}}
"""


def settings_with_runbooks(tmp_path: Path) -> Settings:
    folder = tmp_path / "runbooks"
    folder.mkdir()
    for name, that in (("ok", "true"), ("bad", "false")):
        verdict = "passes" if that == "true" else "fails"
        (folder / f"probe-{name}.yaml").write_text(PROBE.format(name=name, that=that,
                                                                verdict=verdict))  # fmt: skip
    return Settings(data_dir=tmp_path / "data", runbooks={"dirs": [str(folder)]})


def incident(engine, st, *, sev, fields, impact, detected, ack, mitigated, resolved, declared):
    """An incident with its milestones at minutes after ``declared`` (None: not recorded)."""
    with db.transaction(engine) as s:
        inc = svc.declare(s, st, title=f"{sev} on {fields}", severity=sev, actor="U0ALICE01",
                          fields=fields, now=declared)  # fmt: skip
        for name, minutes in (("impact_started", impact), ("detected", detected),
                              ("acknowledged", ack), ("mitigated", mitigated)):  # fmt: skip
            if minutes is not None:
                at = declared + minutes * MIN  # recorded when it happened
                svc.set_milestone(s, st, inc.ref, name, at, actor="U0ALICE01",
                                  now=max(at, declared))  # fmt: skip
        if resolved is not None:
            svc.resolve(s, st, inc.ref, "fixed", actor="U0ALICE01",
                        now=declared + resolved * MIN)  # fmt: skip
        return inc.ref


def run_probe(engine, st, ref: str, name: str) -> str:
    runbook = load_dirs(st.runbooks.dirs, registry).get(name)
    assert runbook is not None
    with db.transaction(engine) as s:
        info = run_context.incident_info(s, svc.get(s, ref))
    plan = planning.plan(runbook, {}, incident=info, variables={}, services=Services(settings=st))
    with db.transaction(engine) as s:
        rid = rb_engine.start(s, st, plan, key=str(uuid.uuid4()), requester="alice",
                              incident=svc.get(s, ref), source="cli").run_id  # fmt: skip
    pool = WorkerPool(engine, threads=1, poll=0.05, only_run=rid).start()
    try:
        from incidentbot.ledger import service as ledger

        def ended() -> str | None:
            with db.transaction(engine) as s:
                status = ledger.get_run(s, rid, with_spec=False).status
            return status if status in ("succeeded", "failed", "needs_attention") else None

        return wait_for(ended, what=f"{name} to end")
    finally:
        pool.stop(timeout=10)


@pytest.fixture
def seeded(engine, tmp_path):
    """Four incidents over two months, two runbook runs, one overdue action item."""
    st = settings_with_runbooks(tmp_path)
    runtime.install(engine, st)  # the runbook actions, as the bot and the CLI install them
    eth = {"chain": "ethereum", "network": "mainnet", "component": "rpc"}
    sol = {"chain": "solana", "network": "mainnet", "component": "validator"}
    # SEV1, January: impact 10 min before declare, acknowledged 4 min after detection...
    a = incident(engine, st, sev="SEV1", fields=eth, declared=T, impact=-10, detected=-6,
                 ack=-2, mitigated=20, resolved=50)  # fmt: skip
    incident(engine, st, sev="SEV1", fields=sol, declared=T + timedelta(days=3), impact=-30,
             detected=-20, ack=-10, mitigated=60, resolved=90)  # fmt: skip
    # SEV2, February: one without an impact start (left out of MTTM and MTTR), one still open.
    incident(engine, st, sev="SEV2", fields=eth, declared=T + timedelta(days=30), impact=None,
             detected=0, ack=5, mitigated=None, resolved=15)  # fmt: skip
    incident(engine, st, sev="SEV2", fields={"chain": "ethereum"},
             declared=T + timedelta(days=31), impact=-5, detected=None, ack=None,
             mitigated=None, resolved=None)  # fmt: skip
    assert run_probe(engine, st, a, "probe-ok") == "succeeded"
    assert run_probe(engine, st, a, "probe-bad") == "failed"
    with db.transaction(engine) as s:
        items.add(s, st, svc.get(s, a), "alert on a stuck head", actor="U0ALICE01",
                  due=date(2026, 1, 20), now=T)  # fmt: skip
        items.add(s, st, svc.get(s, a), "write the runbook", actor="U0ALICE01", now=T)
    return st


def test_the_report_across_incidents(engine, seeded):
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # the 20 January item is overdue by then
    with db.transaction(engine) as s:
        rep = stats.build(s, seeded, now=now)
    data = rep.to_json()
    assert data["incidents"] == {
        "key": "all", "incidents": 4, "resolved": 3,
        # MTTA: (4 + 10 + 5) / 3 min; MTTM: (30 + 90) / 2; MTTR: (60 + 120) / 2
        "mtta": {"seconds": 380.0, "known": 3},
        "mttm": {"seconds": 3600.0, "known": 2},
        "mttr": {"seconds": 5400.0, "known": 2},
    }  # fmt: skip
    sev = {g["key"]: g for g in data["by_severity"]}
    assert list(sev) == ["SEV1", "SEV2"]  # in the policy's order
    assert sev["SEV1"]["mttr"] == {"seconds": 5400.0, "known": 2}
    assert sev["SEV2"]["mtta"] == {"seconds": 300.0, "known": 1}
    assert sev["SEV2"]["mttr"] == {"seconds": None, "known": 0}
    chains = {g["key"]: (g["incidents"], g["mttr"]["seconds"]) for g in data["by_field"]["chain"]}
    assert chains == {"ethereum": (3, 3600.0), "solana": (1, 7200.0)}
    components = {g["key"]: g["incidents"] for g in data["by_field"]["component"]}
    assert components == {"rpc": 2, "validator": 1, stats.NOT_SET: 1}
    months = {g["key"]: (g["incidents"], g["resolved"]) for g in data["by_month"]}
    assert months == {"2026-01": (2, 2), "2026-02": (2, 1)}
    assert data["runbook_runs"] == {
        "runs": 2,
        "outcomes": {"failed": 1, "succeeded": 1},
        "by_runbook": [
            {"runbook": "probe-bad", "runs": 1, "outcomes": {"failed": 1}},
            {"runbook": "probe-ok", "runs": 1, "outcomes": {"succeeded": 1}},
        ],
    }
    assert data["action_items"] == {"open": 2, "overdue": 1}

    # A period: only February's incidents (and their runs: none).
    with db.transaction(engine) as s:
        feb = stats.build(s, seeded, since=datetime(2026, 2, 1, tzinfo=UTC), now=now)
    assert (feb.overall.incidents, feb.runs) == (2, 0)


def test_the_report_from_the_command_line(engine, seeded, cli, database_url, tmp_path):
    config = tmp_path / "incidentbot.yaml"
    config.write_text(json.dumps({"database_url": database_url, "runbooks": {"dirs": []}}))
    code, out, err = cli("--config", str(config), "report")
    assert (code, err) == (0, "")
    assert out.startswith("4 incidents (3 resolved), incidents declared from the first incident")
    assert "│ SEV1 " in out and "1h 30m" in out and "│ ethereum " in out and "│ 2026-02 " in out
    assert "probe-bad" in out and "1 failed" in out
    data = json.loads(cli("--config", str(config), "report", "--json")[1])
    assert data["incidents"]["incidents"] == 4
    code, _, err = cli("--config", str(config), "report", "--since", "yesterday")
    assert code == 1 and "--since 'yesterday': use a date such as 2026-01-01" in err
    code, _, err = cli("--config", str(config), "report", "--html", str(tmp_path / "no" / "r.html"))
    assert code == 1 and "not a file in an existing directory" in err
    page = tmp_path / "report.html"
    code, out, err = cli("--config", str(config), "report", "--html", str(page))
    assert code == 0 and out.startswith("Wrote the report (") and str(page) in out
    assert page.read_text().count("<svg") == 4

    # A private incident stays out of the report, in every form.
    code, _, err = cli("--config", str(config), "incident", "declare", "--private", "Key leak")
    assert (code, err) == (0, "")
    data = json.loads(cli("--config", str(config), "report", "--json")[1])
    assert data["incidents"]["incidents"] == 4
    assert "Key leak" not in cli("--config", str(config), "report")[1]
    code, _, _ = cli("--config", str(config), "report", "--html", str(page))
    assert code == 0 and "Key leak" not in page.read_text()


def test_the_report_page_renders_in_chromium(engine, seeded, tmp_path):
    binary = chromium()
    with db.transaction(engine) as s:
        rep = stats.build(s, seeded, now=datetime(2026, 3, 1, tzinfo=UTC))
    page = render.html(seeded, rep)
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )  # standalone: nothing fetched at render time
    ARTIFACTS.mkdir(exist_ok=True)
    html = ARTIFACTS / "report.html"
    html.write_text(page, encoding="utf-8")
    profile = tmp_path / "chromium-profile"
    dom = run_chromium(binary, profile, "--dump-dom", html.as_uri()).stdout
    outline = Outline()
    outline.feed(dom)
    assert outline.sections == {
        "overview": "Overview",
        "charts": "Charts",
        "response-times": "Response times",
        "runbook-runs": "Runbook runs",
        "action-items": "Action items",
    }
    text = " ".join(" ".join(outline.text).split())
    assert "MTTR by severity" in text and "Incidents per month" in text
    assert "Runbook runs by outcome" in text and "2 open, 1 overdue" in text
    assert dom.count('class="bar"') == 2 + 2 + 2 + 2  # SEV1/SEV2, two months twice, 2 outcomes

    png = ARTIFACTS / "report.png"
    png.unlink(missing_ok=True)
    run_chromium(binary, profile, "--window-size=1200,2200", f"--screenshot={png}", html.as_uri())
    width, height, raw = png_pixels(png.read_bytes())
    assert (width, height) == (1200, 2200)
    assert len(set(raw[: len(raw) // 2])) > 16, "the screenshot is (nearly) one colour"
