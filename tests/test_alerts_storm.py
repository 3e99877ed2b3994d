"""An alert storm against the running bot over real HTTP, on SQLite and PostgreSQL.

1,000 distinct alerts in 50 Alertmanager groups. Each group is notified three times as it
would be during an outage (10 alerts firing; all 20 firing with 5 resolved; 10 resolved and 10
still firing). The first and the last notification of each group are delivered twice, as an
Alertmanager HA pair does, so 250 requests carrying 4,000 alerts (repeats included) go out at
once, in random order: first deliveries, repeats and resolves race each other.
"""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
from sqlmodel import col, func, select

from incidentbot import db
from incidentbot.alerts.models import AlertDelivery, AlertGroup, AlertRecord
from incidentbot.incidents.models import Incident, TimelineEvent
from tests.slack_harness import running_bot
from tests.test_alerts_support import RULES, T0, TOKEN, alert, notification, resolved

GROUPS = 50
PER_GROUP = 20


def storm() -> tuple[list[dict], Counter[str]]:
    """The notifications, and how often each alert (by fingerprint) appears in them."""
    bodies: list[dict] = []
    appearances: Counter[str] = Counter()
    for g in range(GROUPS):
        alerts = [
            alert(
                "NodeLagging",
                cluster=f"c{g}",
                instance=f"node-{g}-{i}:8545",
                starts_at=T0 + timedelta(seconds=i),
            )
            for i in range(PER_GROUP)
        ]
        rounds = [  # (alerts, copies delivered)
            (alerts[:10], 2),
            ([resolved(a) for a in alerts[:5]] + alerts[5:], 1),
            ([resolved(a) for a in alerts[:10]] + alerts[10:], 2),
        ]
        for batch, copies in rounds:
            body = notification(batch, group=f"NodeLagging/c{g}")
            body["groupLabels"] = {"alertname": "NodeLagging", "cluster": f"c{g}"}
            for _ in range(copies):
                bodies.append(body)
                appearances.update(a["fingerprint"] for a in batch)
    random.Random(5).shuffle(bodies)
    return bodies, appearances


def test_a_storm_of_1000_alerts_in_50_groups_gives_50_incidents(engine):
    bodies, appearances = storm()
    assert (len(bodies), sum(appearances.values())) == (250, 4000)
    # One ledger worker: the incidents' Slack channels are not what this test is about.
    settings = {"alertmanager_token": TOKEN, "alerts": {"rules": RULES}, "workers": 1}
    with running_bot(engine, **settings) as (_bot, sandbox):
        url = sandbox.driver.bot_url.replace("/slack/events", "/webhooks/alertmanager")
        with (
            httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client,
            ThreadPoolExecutor(max_workers=12) as pool,
        ):
            statuses = list(pool.map(lambda b: client.post(url, json=b).status_code, bodies))
    assert Counter(statuses) == {200: len(bodies)}

    with db.transaction(engine) as s:
        incidents = list(s.exec(select(Incident)))
        rows = list(s.exec(select(AlertRecord)))
        groups = list(s.exec(select(AlertGroup)))
        deliveries = s.exec(select(func.count()).select_from(AlertDelivery)).one()
        failed = s.exec(select(func.count()).where(col(AlertDelivery.failed).is_(True))).one()
        events = list(
            s.exec(select(TimelineEvent).where(col(TimelineEvent.kind).startswith("alert.")))
        )

    assert len(incidents) == GROUPS
    assert sorted(i.number for i in incidents) == list(range(1, GROUPS + 1))
    assert all(i.severity == "SEV3" and i.declared_by == "alertmanager" for i in incidents)
    assert (deliveries, failed) == (len(bodies), 0)

    # every alert recorded once, attached to its own group's incident, every copy counted
    assert len(rows) == GROUPS * PER_GROUP
    assert {r.fingerprint: r.received_count for r in rows} == dict(appearances)
    assert all(r.incident_id is not None for r in rows)
    incident_of_group = {g.id: g.incident_id for g in groups}
    assert len(set(incident_of_group.values())) == GROUPS
    assert all(r.incident_id == incident_of_group[r.group_id] for r in rows)
    assert Counter(r.status for r in rows) == {"resolved": GROUPS * 10, "firing": GROUPS * 10}

    # on the timeline: each alert firing once, each resolved one resolved once
    by_kind = Counter(e.kind for e in events)
    assert by_kind == {"alert.firing": GROUPS * PER_GROUP, "alert.resolved": GROUPS * 10}
    per_incident = Counter(e.incident_id for e in events if e.kind == "alert.firing")
    assert set(per_incident.values()) == {PER_GROUP}
