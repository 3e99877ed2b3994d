"""/incident end to end: signed requests from the local Slack server, over real sockets."""

from __future__ import annotations

import json

import pytest

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.installation import installation_id
from incidentbot.sandbox.slack.server import SlackSandbox
from tests.conftest import count
from tests.slack_harness import (
    assert_spec_conformance,
    channel_of,
    held_until_answered,
    incident,
    running_bot,
    settled,
    timeline_kinds,
    wait_for,
)

TITLE = "RPC p99 latency above 2s on mainnet"
CHANNEL = "inc-1-rpc-p99-latency-above-2s-on-mainnet"


@pytest.fixture
def slack(engine):
    with running_bot(engine) as (_bot, sandbox):
        yield sandbox


def reply(ack) -> dict:
    assert ack.status == 200, (ack.status, ack.body)
    return json.loads(ack.body)


def declare(slack, text=f"declare sev2 {TITLE}", user="alice"):
    body = reply(slack.driver.slash_command(text, user=user, channel="incidents"))
    assert body["response_type"] == "in_channel"
    return body


def test_declare_opens_a_furnished_channel_and_announces_it(slack, engine):
    body = declare(slack)
    assert "declared *INC-1* (SEV2): " + TITLE in body["text"]
    assert channel_of(engine) == CHANNEL

    snap = slack.snapshot(CHANNEL)
    assert snap.topic == "INC-1 · SEV2 Major · triage"
    # The purpose says which incident, and which installation owns the channel.
    assert snap.purpose == f"[INC-1] {TITLE} · incidentbot {installation_id(engine)}"
    assert len(snap.pinned) == 1 and "INC-1: " + TITLE in snap.pinned[0].text
    digest = wait_for(
        lambda: [m for m in slack.snapshot("incidents").messages if "#" + CHANNEL in m.text],
        what="digest announcement",
    )
    assert len(digest) == 1 and "SEV2" in digest[0].text
    expected = {
        "incident.declared",
        "channel.created",
        "responders.invited",
        "header.posted",
        "digest.announced",
    }
    # The effects run concurrently: wait until every one of them is on the timeline.
    wait_for(lambda: expected <= set(timeline_kinds(engine)), what="every declare effect")
    assert "alice" in slack.snapshot(CHANNEL).members  # invited beside the header, not before
    assert_spec_conformance(slack)


def test_every_channel_subcommand(slack, engine):
    declare(slack)
    ch = channel_of(engine)

    def run(text, user="alice"):
        return reply(slack.driver.slash_command(text, user=user, channel=ch))

    assert "changed severity SEV2 → *SEV1*" in run("sev 1")["text"]
    assert "changed status triage → *investigating*" in run("status investigating")["text"]
    bob = slack.workspace.user("bob").id
    assert "as *Scribe*" in run(f"assign scribe <@{bob}|bob>")["text"]
    roles = run("roles")
    assert roles["response_type"] == "ephemeral" and f"*Scribe*: <@{bob}>" in roles["text"]
    assert "unassigned the scribe" in run("unassign scribe")["text"]
    assert run("note geth on rpc-2 is 40 blocks behind")["text"] == "Noted on the INC-1 timeline."
    assert "Posting your update" in run("update Failover to rpc-3 in progress")["text"]
    assert run("summary")["response_type"] == "ephemeral"
    timeline = run("timeline")
    assert timeline["response_type"] == "ephemeral" and "severity.changed" in json.dumps(timeline)
    assert "resolved *INC-1*" in run("resolve Failed over to rpc-3")["text"]
    assert "reopened *INC-1*" in run("reopen")["text"]
    assert "Open incidents" in run("list")["text"]
    assert "In this incident's channel" in run("help")["text"]

    inc = incident(engine)
    assert (inc.severity, inc.status) == ("SEV1", "investigating")
    wait_for(
        lambda: (
            "Failover to rpc-3 in progress" in slack.transcript(ch)
            and "Failover to rpc-3 in progress" in slack.transcript("incidents")
        ),
        what="status update in both channels",
    )
    wait_for(
        lambda: slack.snapshot(ch).topic == "INC-1 · SEV1 Critical · investigating",
        what="topic refresh",
    )
    wait_for(
        lambda: ":red_circle: *SEV1* · *Investigating*" in slack.snapshot(ch).pinned[0].text,
        what="header updated in place",
    )
    assert len(slack.snapshot(ch).pinned) == 1
    assert_spec_conformance(slack)


MALFORMED = [
    ("frobnicate", "Unknown subcommand `frobnicate`."),
    ("declare sev9 Nodes down", "Unknown severity 'sev9'"),
    ("sev", "`sev` needs a value."),
    ("sev 7", "Unknown severity '7'"),
    ("status", "`status` needs a value."),
    ("status fixed", "Unknown status 'fixed'"),
    ("status resolved", "Resolving needs a summary"),
    ("status triage", "INC-1 is already triage"),
    ("sev 2", "INC-1 is already SEV2"),
    ("assign", "`assign` needs a role"),
    ("assign scribe", "Mention the person to assign"),
    ("assign janitor <@U0000001>", "Unknown role 'janitor'"),
    ("assign scribe <@U1> <@U2>", "Mention exactly one person"),
    ("unassign", "`unassign` needs a role"),
    ("unassign commander", "An incident always has a commander"),
    ("unassign scribe", "Nobody is scribe of INC-1"),
    ("note", "`note` needs some text."),
    ("update", "`update` needs some text."),
    ("resolve", "`resolve` needs a summary"),
    ("reopen", "INC-1 is triage, not resolved or closed"),
    ("reopen now", "`reopen` takes no arguments."),
    ("list everything", "`list` takes no arguments."),
]


def test_malformed_commands_get_an_ephemeral_message_and_change_nothing(slack, engine):
    declare(slack)
    ch = channel_of(engine)
    settled(engine)
    before = count(engine, "timeline_event")
    for text, message in MALFORMED:
        body = reply(slack.driver.slash_command(text, user="bob", channel=ch))
        assert body["response_type"] == "ephemeral", text
        assert body["text"].startswith(message), (text, body["text"])
        assert "Usage: /incident" in body["text"], text
    for text in ("sev 1", "resolve done", "timeline"):
        body = reply(slack.driver.slash_command(text, user="bob", channel="incidents"))
        assert "only works in an incident's channel" in body["text"]
    assert count(engine, "timeline_event") == before
    inc = incident(engine)
    assert (inc.severity, inc.status, count(engine, "incident")) == ("SEV2", "triage", 1)


def test_the_declare_form(slack, engine):
    alice = slack.workspace.user("alice").id
    ack = slack.driver.slash_command("declare", user="alice", channel="incidents")
    assert reply(ack)["text"] == "Opening the declare form…"
    view = wait_for(
        lambda: [v for v in slack.workspace.views.values() if v.is_open], what="the form"
    )[0]
    bad = slack.driver.view_submission(
        view.id, {"title": "   ", "severity": "SEV1", "commander": alice}
    )
    assert bad.json()["response_action"] == "errors"
    assert count(engine, "incident") == 0
    inputs = {
        "commander": alice,
        "title": "Validators missing attestations",
        "severity": "SEV1",
        "field_chain": "ethereum",
        "field_network": "holesky",
    }
    first = slack.driver.view_submission(view.id, inputs)
    assert first.status == 200 and not first.body.strip()
    inc = incident(engine)
    assert (inc.title, inc.severity, inc.fields) == (
        "Validators missing attestations",
        "SEV1",
        {"chain": "ethereum", "network": "holesky"},
    )
    assert inc.commander == slack.workspace.user("alice").id
    slack.driver.send(first.request)  # the same submission arriving twice
    assert count(engine, "incident") == 1
    channel_of(engine)


def test_the_declare_form_closes_without_waiting_for_its_confirmation(slack, engine):
    """The form's answer (it closes) does not wait for Slack to take the confirmation only the
    declarer sees: Slack holds that call here until the answer has arrived."""
    alice = slack.workspace.user("alice").id
    slack.driver.slash_command("declare", user="alice", channel="incidents")
    [view] = wait_for(
        lambda: [v for v in slack.workspace.views.values() if v.is_open], what="the form"
    )
    with held_until_answered(slack, "chat.postEphemeral"):
        ack = slack.driver.view_submission(
            view.id, {"title": "Finality stalled", "severity": "SEV1", "commander": alice}
        )
    assert ack.ok and not ack.body.strip() and not view.is_open
    assert incident(engine).title == "Finality stalled"  # recorded before the answer
    told = wait_for(
        lambda: [e.text for e in slack.ephemeral("alice") if "*INC-1*" in e.text],
        what="the confirmation",
    )
    assert "declared *INC-1* (SEV1): Finality stalled" in told[0]


def test_bare_incident_opens_the_form_outside_and_the_help_inside(slack, engine):
    with held_until_answered(slack, "views.open"):  # the answer does not wait for the form
        ack = slack.driver.slash_command("", user="bob", channel="incidents")
    assert reply(ack)["text"] == "Opening the declare form…"
    [view] = wait_for(
        lambda: [v for v in slack.workspace.views.values() if v.is_open], what="the form"
    )
    assert view.user == slack.workspace.user("bob").id
    assert view.data["title"]["text"].lower().startswith("declare")
    declare(slack)
    ch = channel_of(engine)
    body = reply(slack.driver.slash_command("", user="bob", channel=ch))
    assert body["response_type"] == "ephemeral"
    assert "/incident resolve" in body["text"] and "/incident declare" in body["text"]
    assert [v.id for v in slack.workspace.views.values() if v.is_open] == [view.id]
    assert count(engine, "incident") == 1


def test_pushpin_puts_a_message_on_the_timeline_once(slack, engine):
    declare(slack)
    ch = channel_of(engine)
    msg, _ = slack.driver.post_message("alice", ch, "geth logs: bad block 21000000")
    acks = slack.driver.add_reaction("bob", ch, msg.ts, "pushpin")
    slack.driver.redeliver(acks[0])  # Slack retrying the event
    slack.driver.add_reaction("carol", ch, msg.ts, "pushpin")  # a second pin
    slack.driver.add_reaction("carol", ch, msg.ts, "eyes")  # not a pin
    # The bot answers an event only once it has recorded it, so the timeline is complete here.
    with db.transaction(engine) as s:
        pins = [e for e in svc.timeline(s, svc.get(s, "INC-1")) if e.kind == "timeline.pinned"]
    assert len(pins) == 1
    assert pins[0].summary == "geth logs: bad block 21000000"
    assert pins[0].actor == slack.workspace.user("alice").id
    assert abs(pins[0].occurred_at.timestamp() - float(msg.ts)) < 0.001


def test_retried_slash_command_declares_once(slack, engine):
    ack = slack.driver.slash_command(f"declare {TITLE}", user="alice", channel="incidents")
    slack.driver.send(ack.request)  # the same request delivered twice
    assert count(engine, "incident") == 1


def test_bad_signature_is_refused_and_changes_nothing(slack, engine):
    req = slack.driver.slash_command_request(f"declare {TITLE}", user="alice")
    forged = slack.driver.build(
        "slash_command", req.body, req.headers["Content-Type"], signing_secret="not-the-secret"
    )
    assert slack.driver.send(forged).status == 401
    stale = slack.driver.build(
        "slash_command", req.body, req.headers["Content-Type"], timestamp=1_600_000_000
    )
    assert slack.driver.send(stale).status == 401
    assert count(engine, "incident") == 0


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "ratelimited", "retry_after": 1},
        {"kind": "server_error", "status": 500},
        {"kind": "timeout", "hold_s": 12.0},
    ],
    ids=["429", "500", "timeout"],
)
def test_slack_failures_on_create_are_retried(engine, fault):
    with running_bot(engine) as (bot, slack):
        bot.chat.client.timeout = 2
        armed = slack.fail_next("conversations.create", count=2, **fault)
        declare(slack)
        assert incident(engine).ref == "INC-1"  # recorded before any Slack call
        assert channel_of(engine) == CHANNEL
        assert armed.remaining == 0  # both failures were met, then the retry succeeded
        assert [c.name for c in slack.workspace.channels.values()].count(CHANNEL) == 1


def test_healthz_and_metrics(engine):
    import httpx

    with running_bot(engine) as (bot, slack):
        base = slack.driver.bot_url.removesuffix("/slack/events")
        bot.check_slack()
        declare(slack)
        channel_of(engine)
        reply(slack.driver.slash_command("frobnicate", user="bob"))
        health = httpx.get(f"{base}/healthz").json()
        assert health["ok"] is True and health["database"] == "ok" and health["slack"] == "ok"
        assert isinstance(health["ledger_backlog"], int)
        text = httpx.get(f"{base}/metrics").text
        assert 'incidentbot_open_incidents{severity="SEV2"} 1.0' in text
        assert 'incidentbot_open_incidents{severity="SEV1"} 0.0' in text
        assert 'incidentbot_ack_seconds_count{kind="command"} 2.0' in text
        assert 'incidentbot_command_seconds_count{subcommand="declare"} 1.0' in text
        assert (
            'incidentbot_slack_api_calls_total{method="conversations.create",outcome="ok"}' in text
        )
        assert "incidentbot_ledger_runs{status=" in text


def test_an_effect_that_finally_fails_is_reported(engine):
    with running_bot(engine, channels={"digest": "no-such-channel"}) as (_bot, slack):
        declare(slack)
        channel_of(engine)
        settled(engine)

        def failures():
            with db.transaction(engine) as s:
                events = svc.timeline(s, svc.get(s, "INC-1"))
            return [e for e in events if e.kind == "effect.failed"]

        # The failure is reported just after the run's last commit.
        found = wait_for(failures, what="the failure on the timeline")
        assert "digest channel #no-such-channel does not exist" in found[0].summary
        wait_for(
            lambda: "#no-such-channel does not exist" in slack.transcript(CHANNEL),
            what="the failure in the channel",
        )
        dm = slack.workspace.im_with(slack.workspace.user("alice").id)
        wait_for(
            lambda: "#no-such-channel does not exist" in slack.transcript(dm.id),
            what="the failure sent to the declarer",
        )


def test_joining_an_incident_channel_is_recorded_once(slack, engine):
    declare(slack)
    ch = channel_of(engine)
    acks = slack.driver.join_channel("dave", ch)
    slack.driver.redeliver(acks[0])
    joined = [k for k in timeline_kinds(engine) if k == "participant.joined"]
    assert joined == ["participant.joined"]


def test_configured_responders_and_groups_are_invited(engine):
    seeded = SlackSandbox().workspace  # ids are the same in every seeded workspace
    erin = seeded.user("erin").id
    group = next(g.id for g in seeded.usergroups.values() if g.handle == "oncall-rpc")
    with running_bot(engine, responders={"users": [erin], "groups": [group]}) as (_bot, slack):
        declare(slack)
        channel = channel_of(engine)  # the header is saved; the invitations run beside it
        wait_for(lambda: "responders.invited" in timeline_kinds(engine), what="the invitations")
        members = set(slack.snapshot(channel).members)
        assert {"alice", "erin", "bob", "carol"} <= members  # declarer, user, the group's two
        assert "dave" not in members
