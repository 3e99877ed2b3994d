"""``declare_min_severity`` (the setting and a rule's own): an alert whose rule is less severe
than the minimum is recorded and attaches to its group's open incident, but never declares one.
On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlmodel import select

from incidentbot import db
from incidentbot.alerts import service
from incidentbot.alerts.models import AlertRecord
from incidentbot.config import Settings
from incidentbot.incidents.models import Incident
from tests.test_alerts_support import RULES, TOKEN, alert, notification


def settings_with(
    tmp_path: Path, minimum: str | None = "SEV2", rules: list[dict[str, Any]] | None = None
) -> Settings:
    alerts: dict[str, Any] = {"rules": RULES if rules is None else rules}
    if minimum is not None:
        alerts["declare_min_severity"] = minimum
    return Settings(data_dir=tmp_path / "data", alertmanager_token=TOKEN, alerts=alerts)


def with_rule(name: str, **changes: Any) -> list[dict[str, Any]]:
    return [{**r, **changes} if r["name"] == name else r for r in RULES]


def lagging(n: int = 1) -> dict[str, Any]:
    return alert("NodeLagging", instance=f"erigon-{n}", env="prod")  # rule node-lagging: SEV3


def rpc(n: int = 1) -> dict[str, Any]:
    return alert("RpcEndpointDown", instance=f"rpc-{n}:8545", chain="ethereum")  # SEV1


def incidents(engine) -> list[tuple[str, str]]:
    with db.transaction(engine) as s:
        return [(i.ref, i.severity) for i in s.exec(select(Incident).order_by(Incident.number))]


def records(engine) -> list[tuple[str, str | None, str | None, bool]]:
    """(alertname, rule, severity, attached to an incident) per recorded alert."""
    with db.transaction(engine) as s:
        rows = s.exec(select(AlertRecord).order_by(AlertRecord.id))
        return [(r.alertname, r.rule, r.severity, r.incident_id is not None) for r in rows]


def test_a_rule_below_the_minimum_records_its_alert_but_declares_nothing(engine, tmp_path):
    settings = settings_with(tmp_path, "SEV2")
    body = notification([lagging()], group="NodeLagging")
    for _ in range(2):  # Alertmanager repeats the group: still nothing declared
        out = service.ingest(engine, settings, body)
        assert not out.declared and out.incident is None
        assert "1 alert(s) below their rule's declare_min_severity" in out.summary()
    assert incidents(engine) == []
    assert records(engine) == [("NodeLagging", "node-lagging", "SEV3", False)]


def test_a_rule_at_or_above_the_minimum_declares(engine, tmp_path):
    settings = settings_with(tmp_path, "SEV2")
    out = service.ingest(engine, settings, notification([rpc()]))
    assert out.declared and out.incident == "INC-1"
    assert incidents(engine) == [("INC-1", "SEV1")]
    # Exactly at the minimum declares too.
    settings = settings_with(tmp_path, "SEV3")
    out = service.ingest(engine, settings, notification([lagging()], group="NodeLagging"))
    assert out.declared and out.incident == "INC-2"
    assert incidents(engine) == [("INC-1", "SEV1"), ("INC-2", "SEV3")]


def test_a_rule_s_own_minimum_overrides_the_setting(engine, tmp_path):
    # Looser for this rule: node-lagging (SEV3) declares although the setting says SEV2.
    settings = settings_with(
        tmp_path, "SEV2", with_rule("node-lagging", declare_min_severity="sev3")
    )
    out = service.ingest(engine, settings, notification([lagging()], group="NodeLagging"))
    assert out.declared and incidents(engine) == [("INC-1", "SEV3")]
    # Stricter for this rule, with no setting: a SEV2 rule whose own minimum is SEV1.
    rules = [*RULES, {"name": "disk", "matchers": ['alertname="DiskFull"'], "severity": "SEV2",
                      "declare_min_severity": "1"}]  # fmt: skip
    settings = settings_with(tmp_path, None, rules)
    out = service.ingest(engine, settings, notification([alert("DiskFull")], group="DiskFull"))
    assert not out.declared and out.incident is None
    assert "declare_min_severity" in out.summary()
    assert len(incidents(engine)) == 1


def test_an_alert_below_the_minimum_still_attaches_to_its_group_s_incident(engine, tmp_path):
    settings = settings_with(tmp_path, "SEV2")
    out = service.ingest(engine, settings, notification([rpc()], group="Chain"))
    assert out.declared and out.incident == "INC-1"
    out = service.ingest(engine, settings, notification([rpc(), lagging()], group="Chain"))
    assert (out.declared, out.incident, out.new, out.attached) == (False, "INC-1", 1, 1)
    assert records(engine) == [
        ("RpcEndpointDown", "rpc-down", "SEV1", True),
        ("NodeLagging", "node-lagging", "SEV3", True),
    ]


def test_a_mixed_group_declares_from_the_alert_allowed_to_and_attaches_both(engine, tmp_path):
    settings = settings_with(tmp_path, "SEV2")
    out = service.ingest(engine, settings, notification([lagging(), rpc()], group="Chain"))
    assert (out.declared, out.incident, out.attached) == (True, "INC-1", 2)
    assert "declare_min_severity" not in out.summary()
    assert incidents(engine) == [("INC-1", "SEV1")]
    assert [attached for *_, attached in records(engine)] == [True, True]


def test_an_unknown_minimum_severity_is_refused_when_the_settings_load():
    with pytest.raises(ValidationError, match=r"declare_min_severity: 'SEV9' is not a configured"):
        Settings(alerts={"declare_min_severity": "SEV9"})
    with pytest.raises(ValidationError, match=r"rules\[1\]\.declare_min_severity: 'P1' is not"):
        Settings(alerts={"rules": with_rule("node-lagging", declare_min_severity="P1")})
    with pytest.raises(ValidationError, match="allowed are SEV1, SEV2"):
        Settings(alerts={"declare_min_severity": "critical"})
    assert Settings(alerts={"declare_min_severity": "2"}).alerts.declare_min_severity == "SEV2"
