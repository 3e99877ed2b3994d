"""``incidentbot alerts``: unmatched alerts stay visible from a terminal."""

from __future__ import annotations

import pytest

from incidentbot import db
from incidentbot.alerts import service
from tests.test_alerts_support import alert, notification, resolved, settings_for


@pytest.fixture
def ingested(database_url, tmp_path):
    engine = db.make_engine(database_url)
    settings = settings_for(tmp_path)
    try:
        down = alert("RpcEndpointDown", instance="rpc-1:8545", chain="ethereum")
        service.ingest(engine, settings, notification([down]))
        service.ingest(engine, settings, notification([resolved(down)]))
        disk = alert("DiskFilling", instance="indexer-1", annotations={"summary": "92% [full]"})
        service.ingest(engine, settings, notification([disk], group="DiskFilling"))
        service.ingest(engine, settings, notification([disk], group="DiskFilling"))
    finally:
        engine.dispose()


def rows(out: str) -> list[list[str]]:
    """Table rows; a wrapped cell's continuation lines are joined to its row."""
    table: list[list[str]] = []
    for line in out.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        if table and not cells[0]:
            table[-1] = [f"{a} {b}".strip() for a, b in zip(table[-1], cells, strict=True)]
        else:
            table.append(cells)
    return table


def test_alerts_list_shows_every_alert_and_where_it_went(cli, ingested):
    code, out, err = cli("alerts", "list")
    assert (code, err) == (0, "")
    table = rows(out)
    assert [r[1] for r in table] == ["firing", "resolved"]
    assert table[0][2].startswith("DiskFilling instance=indexer-1: 92% [full]")
    assert table[0][3:5] == ["(no rule)", "-"]
    assert table[0][7] == "2"  # received twice
    assert table[1][3:5] == ["rpc-down", "INC-1"]


def test_alerts_list_unmatched_and_limit(cli, ingested):
    code, out, _ = cli("alerts", "list", "--unmatched")
    assert code == 0
    assert [r[2].split()[0] for r in rows(out)] == ["DiskFilling"]
    code, out, _ = cli("alerts", "list", "--limit", "1")
    assert code == 0 and len(rows(out)) == 1
    code, out, err = cli("alerts", "list", "--limit", "0")
    assert code == 2 and "--limit" in err


def test_alerts_show_and_deliveries(cli, ingested):
    code, out, _ = cli("alerts", "show", "1")
    assert code == 0
    assert "Rule:        rpc-down" in out and "Incident:    INC-1" in out
    assert '"instance": "rpc-1:8545"' in out
    code, _, err = cli("alerts", "show", "99")
    assert code == 1 and "no alert 99" in err
    code, out, _ = cli("alerts", "deliveries")
    assert code == 0
    outcomes = [r[-1] for r in rows(out)]
    assert len(outcomes) == 4
    assert outcomes[-1].startswith("1 alert(s): 1 new, 0 repeated; declared INC-1")
    code, out, _ = cli("alerts", "deliveries", "--failed")
    assert code == 0 and out.strip() == "No failed deliveries."


def test_an_empty_database_says_so(cli):
    assert cli("alerts", "list")[1].strip() == "No alerts."
    assert cli("alerts", "list", "--unmatched")[1].strip() == "No unmatched alerts."
