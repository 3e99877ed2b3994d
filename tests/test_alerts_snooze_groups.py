"""A group's snooze is its own: with two groups on one incident, each group's latest snooze
decides for it alone, whichever was snoozed last, on both back ends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from incidentbot import db
from incidentbot.alerts import service, snooze
from incidentbot.incidents import service as svc
from tests.test_alerts_support import T0, alert, notification, settings_for


@pytest.fixture
def settings(tmp_path):
    return settings_for(tmp_path)


def test_each_group_keeps_its_own_snooze(engine, settings):
    shared = alert("RpcEndpointDown", instance="rpc-1:8545", chain="ethereum")
    other = alert("RpcEndpointDown", instance="rpc-2:8545", chain="ethereum")
    first = service.ingest(engine, settings, notification([shared], group="a"))
    second = service.ingest(engine, settings, notification([shared, other], group="b"))
    assert (first.incident, second.incident, second.declared) == ("INC-1", "INC-1", False)
    with db.read(engine) as s:
        groups = [g.id for g in snooze.groups_of(s, svc.get(s, "INC-1"))]
    assert len(groups) == 2
    a, b = groups

    def ends() -> tuple:
        with db.read(engine) as s:
            return tuple(snooze.snoozed_until(s, g, T0) for g in (a, b))

    def snoozed(group_id: int, length: timedelta) -> None:
        with db.transaction(engine) as s:
            snooze.snooze(s, svc.get(s, "INC-1"), group_id, length, actor="U1", now=T0)

    snoozed(a, timedelta(hours=1))
    assert ends() == (T0 + timedelta(hours=1), None)
    snoozed(b, timedelta(hours=2))  # the newest snooze event is b's: a keeps its own
    assert ends() == (T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    snoozed(a, timedelta(0))  # woken
    assert ends() == (None, T0 + timedelta(hours=2))
