"""Private incidents: declared with ``--private`` (slash command, CLI) or the form's checkbox,
they get a private channel with the usual invites, a redacted line in the digest, status updates
that stay in their channel, and no place in public reports. Driven through the local Slack
server over real sockets."""

from __future__ import annotations

import json

from incidentbot import db
from incidentbot.incidents import service as svc
from tests.slack_harness import (
    assert_spec_conformance,
    channel_of,
    incident,
    running_bot,
    settled,
    timeline_kinds,
    wait_for,
)

SECRET_TITLE = "Hot wallet signer key exposed in CI logs"


def reply(ack) -> dict:  # type: ignore[no-untyped-def]
    assert ack.status == 200, (ack.status, ack.body)
    return json.loads(ack.body)


def digest_texts(slack) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.text for m in slack.workspace.channel("incidents").messages]


def test_a_private_incident_has_a_private_channel_and_a_redacted_digest_line(engine):
    with running_bot(engine) as (_bot, slack):
        ws = slack.workspace
        body = reply(
            slack.driver.slash_command(
                f"declare --private sev2 {SECRET_TITLE}", user="alice", channel="incidents"
            )
        )
        # Only the declarer sees the confirmation: #incidents is public.
        assert body["response_type"] == "ephemeral"
        assert "private incident" in body["text"] and "INC-1" in body["text"]
        name = channel_of(engine)
        settled(engine)
        channel = ws.channel(name)
        assert channel.is_private
        assert ws.user("alice").id in channel.members
        assert ws.user("bob").id not in channel.members
        assert incident(engine).private is True
        assert "channel.created" in timeline_kinds(engine)
        digest = wait_for(
            lambda: [t for t in digest_texts(slack) if "private incident" in t],
            what="the redacted digest line",
        )
        assert digest == ["A private incident was declared (SEV2)"]
        assert not any("wallet" in t or name in t for t in digest_texts(slack))
        # Updates stay in the private channel; the digest line follows the state only.
        slack.driver.slash_command("update rotating the signer key", user="alice", channel=name)
        slack.driver.slash_command("resolve key rotated", user="alice", channel=name)
        settled(engine)
        assert any("rotating the signer key" in m.text for m in channel.messages)
        texts = digest_texts(slack)
        assert not any("rotating" in t or "wallet" in t for t in texts)
        assert texts == ["A private incident was declared (SEV2) · now resolved"]
        listed = reply(slack.driver.slash_command("list", user="bob", channel="incidents"))
        assert "*INC-1* SEV2 · resolved" not in listed["text"]  # only open ones are listed
        slack.driver.slash_command("reopen", user="alice", channel=name)
        settled(engine)
        listed = reply(slack.driver.slash_command("list", user="bob", channel="incidents"))
        assert "*INC-1* SEV2 · investigating · :lock: _private_" in listed["text"]
        assert "wallet" not in listed["text"] and name not in listed["text"]
        slack.driver.slash_command("resolve key rotated", user="alice", channel=name)
        settled(engine)
        # A public one next to it is announced in full.
        slack.driver.slash_command("declare sev3 Indexer lagging", user="bob", channel="incidents")
        channel_of(engine, "INC-2")
        settled(engine)
        assert not ws.channel(channel_of(engine, "INC-2")).is_private
        assert any("Indexer lagging" in t for t in digest_texts(slack))
        with db.read(engine) as s:
            assert [i.ref for i in svc.public_incidents(s)] == ["INC-2"]
        assert_spec_conformance(slack)


def test_the_declare_form_has_a_private_checkbox(engine):
    with running_bot(engine) as (_bot, slack):
        ws = slack.workspace
        ack = slack.driver.slash_command("declare --private", user="carol", channel="incidents")
        assert reply(ack)["text"] == "Opening the declare form…"
        [view] = wait_for(lambda: [v for v in ws.views.values() if v.is_open], what="the form")
        checkbox = next(b for b in view.data["blocks"] if b["block_id"] == "private")
        assert [o["value"] for o in checkbox["element"]["initial_options"]] == ["private"]
        done = slack.driver.view_submission(
            view.id, {"title": SECRET_TITLE, "severity": "SEV1", "private": ["private"]}
        )
        assert done.status == 200 and not done.body.strip()
        channel_of(engine)
        settled(engine)
        assert incident(engine).private and ws.channel(incident(engine).channel_name).is_private
        # Unticked (the bare /incident form): an ordinary public incident.
        slack.driver.slash_command("", user="carol", channel="incidents")
        [form] = wait_for(lambda: [v for v in ws.views.values() if v.is_open], what="the form")
        checkbox = next(b for b in form.data["blocks"] if b["block_id"] == "private")
        assert "initial_options" not in checkbox["element"]
        slack.driver.view_submission(form.id, {"title": "Indexer lagging", "severity": "SEV3"})
        channel_of(engine, "INC-2")
        settled(engine)
        assert not incident(engine, "INC-2").private
        assert not ws.channel(incident(engine, "INC-2").channel_name).is_private
        assert sum(t == "A private incident was declared (SEV1)" for t in digest_texts(slack)) == 1


def test_cli_declare_private(cli, engine):
    code, out, _ = cli("incident", "declare", SECRET_TITLE, "--sev", "2", "--private")
    assert code == 0, out
    assert "Declared INC-1 (SEV2) (private)" in out
    code, out, _ = cli("incident", "declare", "Indexer lagging", "--sev", "3")
    assert code == 0 and "(private)" not in out
    with db.read(engine) as s:
        assert [(i.ref, bool(i.private)) for i in svc.list_incidents(s, _settings())] == [
            ("INC-2", False),
            ("INC-1", True),
        ]
        assert [i.ref for i in svc.public_incidents(s)] == ["INC-2"]


def _settings():  # type: ignore[no-untyped-def]
    from incidentbot.config import Settings

    return Settings()


def test_downgrading_past_private_incidents_needs_drop_data(cli):
    assert cli("incident", "declare", "Indexer lagging", "--sev", "3")[0] == 0
    code, out, err = cli("db", "downgrade", "0016")  # public incidents only: nothing is lost
    assert (code, err) == (0, "") and "downgraded" in out
    assert cli("db", "upgrade")[0] == 0
    assert cli("incident", "declare", SECRET_TITLE, "--private")[0] == 0
    code, out, err = cli("db", "downgrade", "0016")
    assert code == 1 and "column incident.private (1 row with a value)" in err
