"""PagerDuty as a source, over real sockets: an incident triggered in PagerDuty declares one of
ours (once, however often the webhook is delivered), an existing PagerDuty incident is linked by
URL or number, and PagerDuty resolving a linked page asks in the channel whether to resolve ours.
"""

from __future__ import annotations

import json
import threading

from sqlmodel import select

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.paging.links import RESOLVE_BUTTON
from tests.slack_harness import (
    channel_of,
    held_until_answered,
    incident,
    timeline_kinds,
    wait_for,
)
from tests.test_paging_e2e import pages, paging_bot, say


def incidents(engine) -> list[Incident]:
    with db.transaction(engine) as s:
        return list(s.exec(select(Incident)))


def events(engine, kind, ref="INC-1"):
    with db.transaction(engine) as s:
        return [e for e in svc.timeline(s, svc.get(s, ref)) if e.kind == kind]


def question(slack, channel):
    msgs = slack.workspace.channel(channel).messages
    return [m for m in msgs if m.blocks and "was resolved in PagerDuty" in m.text]


def test_an_incident_triggered_in_pagerduty_declares_once_under_redelivery(engine):
    with paging_bot(engine, declaring=("validators",)) as (_bot, slack, pd):
        opened = pd.open_incident("validators", "Validator 12 missed 30 attestations", by="bob")
        assert pd.wait_for_webhooks()
        ours = wait_for(lambda: incidents(engine), what="the declared incident")
        assert [(i.ref, i.title) for i in ours] == [
            ("INC-1", "Validator 12 missed 30 attestations")
        ]
        first = pd.webhook_deliveries("incident.triggered")
        assert [d.status for d in first] == [200]
        assert b"declared INC-1" in first[0].attempts[-1].response.encode()

        # PagerDuty delivers the same event again, three times at once.
        gate = threading.Barrier(3)
        answers: list[list[int | None]] = []

        def again() -> None:
            gate.wait()
            answers.append([d.status for d in pd.redeliver("incident.triggered")])

        threads = [threading.Thread(target=again) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [[200], [200], [200]]
        assert len(incidents(engine)) == 1

        ch = channel_of(engine)
        linked = pages(engine)
        assert [(p.service, p.external_id, p.number, p.status) for p in linked] == [
            ("validators", opened["id"], opened["incident_number"], "triggered")
        ]
        assert len(events(engine, "page.linked")) == 1
        # Declaring did not open a second PagerDuty incident for the same service.
        assert [i["id"] for i in pd.incidents()] == [opened["id"]]
        line = f"|#{opened['incident_number']}> validators: triggered"
        wait_for(
            lambda: any(line in json.dumps(m.blocks) for m in slack.workspace.channel(ch).messages),
            what="the PagerDuty incident in the header",
        )

        # A service not set to declare: nothing is declared.
        pd.open_incident("rpc", "RPC latency", by="bob")
        assert pd.wait_for_webhooks()
        last = pd.webhook_deliveries("incident.triggered")[-1]
        assert last.status == 200 and "does not declare" in last.attempts[-1].response
        assert len(incidents(engine)) == 1


def test_a_monitoring_tool_event_declares_with_the_configured_severity(engine):
    bot = paging_bot(engine, declaring=("validators",), declare_severity="SEV1")
    with bot as (_bot, _slack, pd):
        for _ in range(2):  # the tool repeats itself; PagerDuty groups by dedup key
            pd.trigger_alert("validators", "Head lag > 10 slots", dedup_key="head-lag")
        assert pd.wait_for_webhooks()
        ours = wait_for(lambda: incidents(engine), what="the declared incident")
        assert [(i.title, i.severity) for i in ours] == [("Head lag > 10 slots", "SEV1")]
        # SEV1 pages by policy: the linked PagerDuty incident is that page, none is added.
        assert len(pd.incidents()) == 1
        assert [p.service for p in pages(engine)] == ["validators"]


def test_a_trigger_on_a_service_we_are_paging_attaches_to_that_incident(engine):
    with paging_bot(engine, attaching=("rpc",)) as (_bot, slack, pd):
        say(slack, "declare sev1 service:rpc RPC p99 above 2s")
        ours = wait_for(lambda: [p for p in pages(engine) if p.status == "triggered"])
        alert = pd.trigger_alert("rpc", "RPC 5xx above 5%", dedup_key="rpc-5xx")
        assert pd.wait_for_webhooks()
        pd.redeliver("incident.triggered")
        other = next(i for i in pd.incidents() if i["incident_key"] == alert)
        found = wait_for(
            lambda: [p for p in pages(engine) if p.external_id == other["id"]],
            what="the alert's PagerDuty incident attached",
        )
        assert len(incidents(engine)) == 1
        assert found[0].incident_id == ours[0].incident_id and found[0].service == "rpc"
        assert len(pages(engine)) == 2 and len(events(engine, "page.linked")) == 1
        answers = [
            d.attempts[-1].response
            for d in pd.webhook_deliveries("incident.triggered")
            if d.incident_id == other["id"]
        ]
        assert [a.split(": ", 1)[1] for a in answers] == [
            'attached to INC-1"}',
            'already linked to INC-1"}',
        ]

        say(slack, "resolve Restarted the proxy", channel=channel_of(engine))
        for x in (ours[0].external_id, other["id"]):
            wait_for(
                lambda x=x: pd.incident(x)["status"] == "resolved",
                what="both PagerDuty incidents resolved with ours",
            )


def test_linking_by_url_and_number_and_resolving_together(engine):
    with paging_bot(engine) as (_bot, slack, pd):
        say(slack, "declare sev3 Indexer falling behind")
        ch = channel_of(engine)
        a = pd.open_incident("indexer", "Indexer lag", by="bob")
        b = pd.open_incident("rpc", "RPC errors", by="carol")
        assert pd.wait_for_webhooks()

        body = say(slack, f"page link {a['html_url']}", channel=ch)
        assert body["response_type"] == "in_channel", body
        assert f"PagerDuty #{a['incident_number']} (indexer, triggered)" in body["text"]
        body = say(slack, f"page link #{b['incident_number']}", channel=ch)
        assert f"PagerDuty #{b['incident_number']} (rpc, triggered)" in body["text"]
        again = say(slack, f"page link {b['incident_number']}", channel=ch)
        assert "already linked" in again["text"]

        for bad, told in (
            ("https://example.com/not-an-incident", "is not a PagerDuty incident"),
            ("9999", "PagerDuty has no incident"),
        ):
            out = say(slack, f"page link {bad}", channel=ch)
            assert told in out["text"], out
        assert sorted(p.external_id for p in pages(engine)) == sorted([a["id"], b["id"]])
        assert len(events(engine, "page.linked")) == 2

        say(slack, "resolve Reindexed from the last snapshot", channel=ch)
        for x in (a, b):
            wait_for(
                lambda x=x: pd.incident(x["id"])["status"] == "resolved",
                what="the linked PagerDuty incident resolved with ours",
            )
        assert not question(slack, ch)  # we resolved it: nothing to ask


def test_resolved_in_pagerduty_asks_in_the_channel_and_the_button_resolves(engine):
    with paging_bot(engine, declaring=("validators",)) as (bot, slack, pd):
        opened = pd.open_incident("validators", "Proposer missed 3 slots", by="bob")
        assert pd.wait_for_webhooks()
        wait_for(lambda: incidents(engine), what="the declared incident")
        ch = channel_of(engine)
        pd.resolve(opened["id"], by="bob")
        assert pd.wait_for_webhooks()
        pd.redeliver("incident.resolved")  # a repeat asks nothing more
        asked = wait_for(lambda: question(slack, ch), what="the question in the channel")
        assert len(asked) == 1
        assert asked[0].text == (
            f":white_check_mark: PagerDuty #{opened['incident_number']} (validators) was "
            "resolved in PagerDuty by Bob Okafor. Resolve *INC-1* too?"
        )
        assert "page.resolved" in timeline_kinds(engine)
        assert incident(engine).resolved_at is None

        # Resolved, then answered; the confirmation to the clicker follows the answer.
        with held_until_answered(slack, "response_url", bot):
            ack = slack.driver.block_action(
                RESOLVE_BUTTON, user="alice", channel=ch, message_ts=asked[0].ts
            )
            assert ack.ok, ack
            assert incident(engine).resolved_at is not None
        assert incident(engine).resolution_summary == "Resolved in PagerDuty"
        told = wait_for(
            lambda: [e.text for e in slack.ephemeral("alice") if "resolved *INC-1*" in e.text],
            what="the confirmation to the clicker",
        )
        assert told == [":white_check_mark: You resolved *INC-1*."]
        # A second click changes nothing and says why.
        slack.driver.block_action(RESOLVE_BUTTON, user="bob", channel=ch, message_ts=asked[0].ts)
        wait_for(
            lambda: [e for e in slack.ephemeral("bob") if "Nothing changed" in e.text],
            what="the refusal to the second clicker",
        )
        assert len(question(slack, ch)) == 1


def test_the_cli_links_by_number_and_by_url(engine, cli, tmp_path, monkeypatch):
    with paging_bot(engine) as (bot, slack, pd):
        say(slack, "declare sev3 Indexer falling behind")
        a = pd.open_incident("indexer", "Indexer lag", by="bob")
        b = pd.open_incident("rpc", "RPC errors", by="carol")
        config = tmp_path / "cli.yml"
        config.write_text(json.dumps({"pagerduty": bot.settings.pagerduty.model_dump(mode="json")}))
        monkeypatch.setenv("INCIDENTBOT_CONFIG", str(config))
        monkeypatch.setenv("INCIDENTBOT_PAGERDUTY_API_TOKEN", pd.describe()["api_token"])
        monkeypatch.setenv("INCIDENTBOT_ACTOR", "alice")

        code, out, err = cli("incident", "page", "INC-1", "--link", str(a["incident_number"]))
        assert code == 0, (out, err)
        assert f"INC-1: PagerDuty #{a['incident_number']} (indexer, triggered) linked" in out
        code, out, err = cli("incident", "page", "INC-1", "--link", b["html_url"])
        assert code == 0, (out, err)
        assert f"PagerDuty #{b['incident_number']} (rpc, triggered) linked" in out
        code, out, err = cli("incident", "page", "INC-1", "--link", "rpc-is-down")
        assert code != 0 and "is not a PagerDuty incident" in err, (out, err)
        assert sorted(p.external_id for p in pages(engine)) == sorted([a["id"], b["id"]])
