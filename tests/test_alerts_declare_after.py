"""A rule's ``declare_after``: alerts are recorded and wait; the group declares on the first
delivery after an alert has been firing that long. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlmodel import select

from incidentbot import db
from incidentbot.alerts import service
from incidentbot.alerts.models import AlertRecord
from incidentbot.clock import set_clock
from incidentbot.config import Settings
from incidentbot.incidents.models import Incident
from tests.test_alerts_support import T0, TOKEN, alert, notification

RULE = {
    "name": "lagging",
    "matchers": ['alertname="NodeLagging"'],
    "severity": "SEV3",
    "declare_after": "10m",
}


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Iterator[Clock]:
    fixed = Clock(T0)
    set_clock(fixed)
    yield fixed
    set_clock(None)


def incidents(engine) -> list[str]:
    with db.transaction(engine) as s:
        return [i.ref for i in s.exec(select(Incident))]


def test_a_group_declares_only_once_an_alert_has_fired_long_enough(engine, tmp_path, clock):
    settings = Settings(
        data_dir=tmp_path / "data", alertmanager_token=TOKEN, alerts={"rules": [RULE]}
    )
    body = notification([alert("NodeLagging", instance="erigon-1")], group="NodeLagging")
    clock.at = T0 + timedelta(minutes=9, seconds=59)
    out = service.ingest(engine, settings, body)
    assert not out.declared and out.incident is None
    assert "1 alert(s) wait for their rule's declare_after" in out.summary()
    assert incidents(engine) == []
    with db.transaction(engine) as s:
        (row,) = s.exec(select(AlertRecord))
        assert row.status == "firing" and row.incident_id is None

    clock.at = T0 + timedelta(minutes=10)  # Alertmanager repeats the group
    out = service.ingest(engine, settings, body)
    assert out.declared and out.incident == "INC-1"
    assert incidents(engine) == ["INC-1"]


def test_declare_after_is_checked_when_the_settings_load(tmp_path):
    with pytest.raises(ValidationError, match="declare_after"):
        Settings(alerts={"rules": [{**RULE, "declare_after": "soon"}]})
    with pytest.raises(ValidationError, match="between 0 and 24h"):
        Settings(alerts={"rules": [{**RULE, "declare_after": "2d"}]})
