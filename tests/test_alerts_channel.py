"""An alert group's one message in its incident channel, on SQLite and PostgreSQL: posted when
the group declares, updated in place as alerts fire and resolve, rate-limited per group."""

from __future__ import annotations

import functools
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlmodel import col, select

from incidentbot import db
from incidentbot.alerts import messages, service
from incidentbot.alerts.models import AlertGroup
from incidentbot.config import Settings
from incidentbot.incidents.models import Incident, TimelineEvent
from incidentbot.ledger.actions import ActionRegistry
from incidentbot.ledger.leases import claim_next
from incidentbot.ledger.models import PENDING, Run
from incidentbot.slack.runbook_commands import FORM_CALLBACK
from tests.egress_support import LOOPBACK
from tests.ledger_harness import EffectServer
from tests.slack_harness import (
    assert_spec_conformance,
    channel_of,
    held_until_answered,
    running_bot,
    wait_for,
)
from tests.test_alerts_support import (
    RULES,
    T0,
    TOKEN,
    alert,
    notification,
    resolved,
    settings_for,
)
from tests.test_runbook_e2e import (
    reply,
    runbook_run,
    status,
    with_button,
    write_runbooks,
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


def _queueing(tmp_path, message_interval: int):  # type: ignore[no-untyped-def]
    """Settings with the alert rules, and an ``on_alerts`` that queues the group's message runs
    (their action a no-op: no workers run them here)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        alertmanager_token=TOKEN,
        alerts={"rules": RULES, "message_interval": message_interval},
    )
    registry = ActionRegistry()
    registry.register(messages.ACTION, lambda ctx, input: input, idempotent=True)
    return settings, functools.partial(messages.queue, actions=registry)


def test_updates_of_a_group_are_coalesced_and_at_most_one_per_interval(engine, tmp_path):
    """Without workers: what the ingest queues. A change while the group's run has not started
    joins it; after it started, the next run waits for the interval."""
    settings, on_alerts = _queueing(tmp_path, message_interval=600)
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
        claimed = claim_next(s, "test-worker", 60, run_id=first.id)
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


def test_a_change_joining_a_pending_update_is_read_by_it_even_if_claimed_meanwhile(
    engine, tmp_path, backend
):
    """A delivery joins the group's pending message run instead of queuing another; a worker
    claiming that run before the delivery commits would read the alerts without it, and no run
    would ever show the change. The join holds the run until the delivery commits."""
    if backend == "sqlite":
        pytest.skip("SQLite's write lock keeps a claim from committing inside the delivery")
    settings, on_alerts = _queueing(tmp_path, message_interval=0)
    service.ingest(engine, settings, notification([rpc(0)]), on_alerts=on_alerts)
    with db.transaction(engine) as s:
        (pending,) = s.exec(select(Run).where(Run.kind == messages.KIND))
    claimed_inside: list[object] = []

    def claim() -> object:
        with db.transaction(engine) as s:
            run = claim_next(s, "worker", 60, run_id=pending.id)
            return None if run is None else run.id

    with db.transaction(engine) as s:  # the delivery's transaction, open
        incident = s.exec(select(Incident)).one()
        (group,) = s.exec(select(AlertGroup))
        assert on_alerts(s, settings, incident, group) == pending.id
        with ThreadPoolExecutor(max_workers=1) as pool:  # a worker, meanwhile
            claimed_inside.append(pool.submit(claim).result())
    assert claimed_inside == [None]  # skipped while the delivery held it
    assert claim() == pending.id  # and taken once the delivery committed


def _group_id(engine) -> int:
    with db.transaction(engine) as s:
        (group,) = s.exec(select(AlertGroup))
        assert group.id is not None
        return group.id


@pytest.fixture
def effects():
    srv = EffectServer().start()
    yield srv
    srv.stop()


SUGGESTING = [
    {
        "name": "rpc-down",
        "matchers": ['alertname="RpcEndpointDown"'],
        "severity": "SEV1",
        "service": "rpc",
        "runbook": {"name": "restart-node", "params": {"node": "node"}, "with": {"url": "URL"}},
    }
]


def _button(slack, channel: str, action_id: str):
    for m in alert_messages(slack, channel):
        for b in m.blocks:
            for e in b.get("elements", []):
                if isinstance(e, dict) and e.get("action_id") == action_id:
                    return m, e
    return None


def test_the_run_button_opens_the_prefilled_form_and_runs_after_approval(engine, tmp_path, effects):
    folder = write_runbooks(tmp_path)
    rules = json.loads(json.dumps(SUGGESTING).replace("URL", effects.url))
    settings = {
        "alertmanager_token": TOKEN,
        "alerts": {"rules": rules, "message_interval": 0},
        "runbooks": {"dirs": [str(folder)], "egress": LOOPBACK},
    }
    with running_bot(engine, **settings) as (bot, slack):
        url = slack.driver.bot_url.removesuffix("/slack/events") + "/webhooks/alertmanager"
        down = alert("RpcEndpointDown", node="rpc-2", chain="ethereum")
        sent = httpx.post(
            url, json=notification([down]), headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert sent.status_code == 200
        ch = channel_of(engine)
        bob = slack.workspace.user("bob").id
        reply(slack.driver.slash_command(f"assign commander <@{bob}>", user="alice", channel=ch))
        message, button = wait_for(
            lambda: _button(slack, ch, "alerts_run_0"), what="the Run button"
        )
        assert button["text"]["text"].startswith("Run restart-node node=rpc-2 url=")

        # The click is answered first; the form opens after (its trigger is still fresh).
        with held_until_answered(slack, "views.open", bot):
            ack = slack.driver.block_action(
                "alerts_run_0", user="alice", channel=ch, message_ts=message.ts
            )
        assert ack.ok, ack
        view = wait_for(lambda: _open_form(slack), what="the run form")
        shown = json.dumps(view.data["blocks"])
        assert "*Plan*" in shown and "rpc-2" in shown
        inputs = {
            b["block_id"]: b["element"]["initial_value"]
            for b in view.data["blocks"]
            if b["type"] == "input" and b["element"].get("initial_value")
        }
        assert inputs == {"param_node": "rpc-2", "param_url": effects.url}
        refused = json.loads(slack.driver.view_submission(view.id, inputs, user="alice").body)
        assert refused["response_action"] == "errors"  # the access rules of /incident run
        assert "only members of #inc-1" in refused["errors"]["param_node"]
        assert runbook_run(engine) is None
        slack.driver.join_channel("alice", ch)
        ack = slack.driver.view_submission(view.id, inputs, user="alice")
        assert ack.status == 200 and not ack.body, ack.body

        row = wait_for(lambda: runbook_run(engine), what="the runbook run")
        wait_for(lambda: status(engine, row.run_id) == "parked", what="the approval wait")
        assert effects.requests() == {}  # nothing ran before the approval
        msgs = wait_for(
            lambda: with_button(slack, ch, row.run_id, "runbook_approve"), what="Approve"
        )
        slack.driver.block_action("runbook_approve", user="bob", channel=ch, message_ts=msgs[0].ts)
        wait_for(lambda: status(engine, row.run_id) == "succeeded", what="the run to succeed")
        assert effects.applied() == {"drain-rpc-2": 1}
        assert len(alert_messages(slack, ch)) == 1
        assert_spec_conformance(slack)  # the message, its buttons and the form as Slack takes


def _open_form(slack):
    with slack.workspace.lock:
        forms = [
            v
            for v in slack.workspace.views.values()
            if v.is_open and v.data.get("callback_id") == FORM_CALLBACK
        ]
    return forms[-1] if forms else None


def test_a_snoozed_group_stops_updating_and_does_not_declare_again(engine):
    first = [rpc(i) for i in range(2)]
    with running_bot(
        engine, alertmanager_token=TOKEN, alerts={"rules": RULES, "message_interval": 0}
    ) as (_bot, slack):
        url = slack.driver.bot_url.removesuffix("/slack/events") + "/webhooks/alertmanager"
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def send(body: dict) -> dict:
            answer = httpx.post(url, json=body, headers=headers, timeout=30)
            assert answer.status_code == 200, answer.text
            return answer.json()

        def ask(text: str) -> str:
            return reply(slack.driver.slash_command(text, user="alice", channel=ch))["text"]

        send(notification(first))
        ch = channel_of(engine)
        gid = _group_id(engine)
        wait_for(
            lambda: [m for m in alert_messages(slack, ch) if "2 alert(s) firing" in m.text],
            what="the alerts message",
        )
        listed = ask("alerts")
        assert f"group {gid} {{alertname=RpcEndpointDown}}" in listed
        assert "`alerts snooze` takes" in ask("alerts snooze x 1h")  # bad input: a usage line
        assert "INC-1 has no alert group 999" in ask("alerts snooze 999 1h")

        said = ask(f"alerts snooze {gid} 1h")
        assert said.startswith(f":zzz: group {gid} {{alertname=RpcEndpointDown}} snoozed until")
        (message,) = wait_for(
            lambda: [
                m for m in alert_messages(slack, ch) if ":zzz: Snoozed until" in str(m.blocks)
            ],
            what="the message to show the snooze",
        )
        assert "snoozed until" in ask("alerts")
        queued = len(_alert_runs(engine))
        send(notification([resolved(a) for a in first]))  # resolves while snoozed
        assert len(_alert_runs(engine)) == queued  # no update queued: the message stays
        assert "2 alert(s) firing" in message.text

        ask("resolve the RPC endpoints are back")
        again = send(notification([rpc(5)]))  # a new episode of the group, still snoozed
        assert not again["declared"] and again["incident"] is None
        assert any("group snoozed until" in p for p in again["problems"])
        assert len(_incident_refs(engine)) == 1

        with db.transaction(engine) as s:
            snoozes = s.exec(
                select(TimelineEvent).where(TimelineEvent.kind == "alert.group_snoozed")
            ).all()
        assert [e.actor for e in snoozes] == [slack.workspace.user("alice").id]

        assert "awake again" in ask(f"alerts snooze {gid} 0")
        assert send(notification([rpc(5)]))["declared"]  # Alertmanager repeats it: declares
        assert _incident_refs(engine) == ["INC-1", "INC-2"]
        assert_spec_conformance(slack)


def _alert_runs(engine) -> list[Run]:
    with db.transaction(engine) as s:
        return list(s.exec(select(Run).where(Run.kind == messages.KIND)))


def _incident_refs(engine) -> list[str]:
    with db.transaction(engine) as s:
        return [i.ref for i in s.exec(select(Incident).order_by(col(Incident.number)))]
