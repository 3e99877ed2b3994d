"""An alert group's one message in its incident channel, on SQLite and PostgreSQL: posted when
the group declares, updated in place as alerts fire and resolve, rate-limited per group."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
from sqlmodel import col, select

from incidentbot import db
from incidentbot.alerts import messages, service
from incidentbot.alerts.models import AlertGroup
from incidentbot.config import Settings
from incidentbot.ledger import service as ledger
from incidentbot.ledger.actions import ActionRegistry
from incidentbot.ledger.models import PENDING, Run
from tests.slack_harness import assert_spec_conformance, channel_of, running_bot, wait_for
from tests.test_alerts_support import (
    RULES,
    T0,
    TOKEN,
    alert,
    notification,
    resolved,
    settings_for,
)


def rpc(i: int) -> dict:
    return alert(
        "RpcEndpointDown",
        instance=f"rpc-{i}:8545",
        chain="ethereum",
        starts_at=T0 + timedelta(seconds=i),
    )


def alert_messages(slack, channel: str) -> list:
    return [
        m
        for m in slack.workspace.channel(channel).messages
        if any(str(b.get("block_id", "")).startswith("incident-alerts-") for b in m.blocks)
    ]


def test_a_storm_posts_one_channel_message_updated_as_its_alerts_resolve(engine):
    alerts = [rpc(i) for i in range(8)]
    storm = [notification(alerts[: n + 1]) for n in range(8)]  # the group growing
    storm += storm  # an Alertmanager HA pair delivers every notification twice
    with running_bot(
        engine, alertmanager_token=TOKEN, alerts={"rules": RULES, "message_interval": 0}
    ) as (_bot, slack):
        url = slack.driver.bot_url.removesuffix("/slack/events") + "/webhooks/alertmanager"
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def send(body: dict) -> int:
            return httpx.post(url, json=body, headers=headers, timeout=30).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(send, storm)) == {200}
        ch = channel_of(engine)

        def shows(text: str):
            def probe():
                found = alert_messages(slack, ch)
                return found if found and text in found[-1].text else None

            return wait_for(probe, what=f"the alerts message to show {text!r}")

        shows("8 alert(s) firing, 0 resolved")
        assert send(notification([resolved(a) for a in alerts[:5]] + alerts[5:])) == 200
        shows("3 alert(s) firing, 5 resolved")
        assert send(notification([resolved(a) for a in alerts])) == 200
        (message,) = shows("0 alert(s) firing, 8 resolved")

        assert len(alert_messages(slack, ch)) == 1  # one message, never one per alert
        assert message.edits >= 2
        body = "\n".join(b["text"]["text"] for b in message.blocks if b["type"] == "section")
        assert "*Alerts for INC-1*: 0 firing, 8 resolved" in body
        assert body.count(":white_check_mark: ~RpcEndpointDown") == 8
        assert "instance=rpc-3:8545" in body and "|graph>" in body
        source = message.blocks[-1]["elements"][0]["text"]
        assert source == "Source: <http://alertmanager:9093|Alertmanager>"
        assert_spec_conformance(slack)


def test_updates_of_a_group_are_coalesced_and_at_most_one_per_interval(engine, tmp_path):
    """Without workers: what the ingest queues. A change while the group's run has not started
    joins it; after it started, the next run waits for the interval."""
    settings = Settings(
        data_dir=tmp_path / "data",
        alertmanager_token=TOKEN,
        alerts={"rules": RULES, "message_interval": 600},
    )
    registry = ActionRegistry()
    registry.register(messages.ACTION, lambda ctx, input: input, idempotent=True)
    on_alerts = functools.partial(messages.queue, actions=registry)
    alerts = [rpc(i) for i in range(3)]

    def deliver(body: dict) -> None:
        service.ingest(engine, settings, body, on_alerts=on_alerts)

    def runs() -> list[Run]:
        with db.transaction(engine) as s:
            return list(s.exec(select(Run).where(Run.kind == messages.KIND).order_by(col(Run.id))))

    deliver(notification(alerts[:1]))  # declares INC-1
    deliver(notification(alerts[:2]))  # a new alert while the first update waits
    (first,) = runs()
    assert first.status == PENDING and first.wake_at is None  # the first one: at once
    with db.transaction(engine) as s:
        claimed = ledger.claim_next(s, "test-worker", 60, run_id=first.id)
        assert claimed is not None
        started = claimed.started_at
    deliver(notification(alerts[:2]))  # a repeat: nothing changed, nothing queued
    assert len(runs()) == 1
    deliver(notification([resolved(alerts[0]), *alerts[1:]]))  # flapping: resolve, fire
    deliver(notification([resolved(alerts[1]), *alerts[2:]]))
    first, second = runs()
    assert second.status == PENDING
    assert second.wake_at == started + timedelta(seconds=600)
    assert second.spec["steps"][0]["input"]["group_id"] == _group_id(engine)


def test_without_a_chat_adapter_nothing_is_queued(engine, tmp_path):
    settings = settings_for(tmp_path)
    out = service.ingest(
        engine,
        settings,
        notification([rpc(1)]),
        on_alerts=functools.partial(messages.queue, actions=ActionRegistry()),
    )
    assert out.declared
    with db.transaction(engine) as s:
        assert s.exec(select(Run).where(Run.kind == messages.KIND)).first() is None


def _group_id(engine) -> int:
    with db.transaction(engine) as s:
        (group,) = s.exec(select(AlertGroup))
        assert group.id is not None
        return group.id
