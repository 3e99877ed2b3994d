"""``/incident postmortem`` from Slack: the bot and the local Slack server over real sockets.
Names are looked up with users.info into the person table; the channel gets the summary."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.postmortems import lifecycle, people
from incidentbot.postmortems.models import Person
from incidentbot.sandbox.slack.server import SlackSandbox
from incidentbot.slack.chat import SlackChat
from incidentbot.slack.grammar import Command, Usage, help_text, parse
from tests.slack_harness import assert_spec_conformance, channel_of, running_bot, wait_for


def reply(ack) -> dict:
    assert ack.status == 200, (ack.status, ack.body)
    return json.loads(ack.body) if ack.body else {}


def stored_people(engine) -> dict[str, tuple[str, str | None]]:
    with db.transaction(engine) as s:
        return {p.user_id: (p.name, p.real_name) for p in s.exec(select(Person))}


def test_postmortem_in_the_channel(engine):
    with running_bot(engine) as (_bot, slack):
        ws = slack.workspace
        alice, bob = ws.user("alice").id, ws.user("bob").id
        reply(slack.driver.slash_command("declare sev1 Validators miss attestations"))
        ch = channel_of(engine)
        reply(slack.driver.slash_command(f"assign commander <@{bob}>", channel=ch))
        reply(slack.driver.slash_command("resolve restarted the beacon node", channel=ch))
        with db.transaction(engine) as s:
            inc = svc.get(s, "INC-1")
            lifecycle.edit_section(
                s,
                _bot.settings,
                inc,
                "what_went_wrong",
                f"<@{bob}> forgot to renew the signer's certificate.",
                actor=alice,
                now=datetime.now(UTC),
            )
        assert stored_people(engine) == {}

        body = reply(slack.driver.slash_command("postmortem", user="bob", channel=ch))
        assert body["response_type"] == "in_channel"
        text = body["text"]
        assert text.startswith(
            ":memo: *INC-1 postmortem*: Draft · required by the SEV1 policy · due "
        )
        assert "owner Bob Okafor" in text  # from users.info, not the id
        assert "*Summary:* restarted the beacon node" in text
        assert "*Written:* 1 of 4 sections (to write: what went well, where we got lucky" in text
        assert ":warning: *Language check*: 2 passages may read as blaming people:" in text
        assert "• What went wrong, line 1: “@Bob Okafor forgot”: names a person" in text
        assert (
            "`incidentbot postmortem render INC-1 --format html --out INC-1-postmortem.html`"
            in (text)
        )
        known = stored_people(engine)
        assert known[alice] == ("alice", "Alice Moreau")
        assert known[bob] == ("bob", "Bob Okafor")
        # the in-channel answer is a message everyone in the channel sees
        wait_for(
            lambda: any("INC-1 postmortem" in m.text for m in ws.channel(ch).messages),
            what="the summary in the channel",
        )

        body = reply(slack.driver.slash_command("postmortem"))  # not an incident channel
        assert body["text"].startswith("`/incident postmortem` only works in an incident's")
        body = reply(slack.driver.slash_command("postmortem now", channel=ch))
        assert body["text"].startswith(
            "Unknown postmortem subcommand `now`: use edit, status or publish.\nUsage: "
        )
        assert_spec_conformance(slack)


def test_the_grammar_knows_postmortem():
    settings = Settings()
    assert parse("postmortem", settings=settings, in_incident_channel=True) == Command("postmortem")
    refused = parse("postmortem", settings=settings, in_incident_channel=False)
    assert isinstance(refused, Usage)
    assert "only works in an incident's channel" in refused.error
    shown = help_text(in_incident_channel=True)
    assert "• `/incident postmortem [edit &lt;section&gt; | status &lt;draft|" in shown
    assert "`: the postmortem draft: summary, language check; write a section" in shown


@pytest.fixture
def sandbox():
    with SlackSandbox() as sb:
        yield sb


def test_name_lookups_are_bounded_and_cached(engine, sandbox):
    chat = SlackChat(sandbox.bot_token, base_url=sandbox.base_url)
    ws = sandbox.workspace
    ids = [ws.user(n).id for n in ("alice", "bob", "carol")]
    now = datetime.now(UTC)
    assert people.refresh(engine, chat, ids, now=now, limit=2) == 2
    assert len(stored_people(engine)) == 2
    assert people.refresh(engine, chat, [*ids, "alice", "incidentbot"], now=now) == 1
    assert people.refresh(engine, chat, ids, now=now) == 0  # fresh: Slack is not asked again
    assert people.refresh(engine, chat, ["U0NOBODY"], now=now) == 0  # user_not_found
    with db.transaction(engine) as s:
        names = people.Names.load(s, [*ids, "slack:" + ids[0], "U0NOBODY", "dana"])
    assert names(ids[2]) == "Carol Nguyen"
    assert names("slack:" + ids[0]) == "Alice Moreau"
    assert names("U0NOBODY") == "U0NOBODY"
    assert names("dana") == "dana"
