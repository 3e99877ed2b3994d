"""Editing an action item (due date, priority, text) from Slack and from the command line: the
same use case, the same timeline event, the same refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from incidentbot import db
from incidentbot.action_items import service as items
from incidentbot.action_items.due import parse_due
from incidentbot.clock import set_clock
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.slack.grammar import Command, Usage, parse
from tests.conftest import count
from tests.slack_harness import assert_spec_conformance, channel_of, running_bot, settled

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def p(text: str) -> Command | Usage:
    return parse(text, settings=Settings(), in_incident_channel=True)


def test_the_edit_grammar():
    due = parse_due("+3d", timezone="UTC")
    assert p("action edit 3 due +3d") == Command(
        "action", {"op": "edit", "id": 3, "field": "due", "value": due}
    )
    assert p("action edit #3 due:+3d").args["value"] == due
    assert p("action edit 3 due none").args == {
        "op": "edit",
        "id": 3,
        "field": "due",
        "value": None,
    }
    assert p("action edit 3 priority URGENT").args["value"] == "urgent"
    assert p("action edit 3 text “check the peers twice”").args == {
        "op": "edit", "id": 3, "field": "text", "value": "check the peers twice"
    }  # fmt: skip
    for text, error in (
        ("action edit", "`action edit` needs an item id"),
        ("action edit 3", "Say what to change: due, priority or text."),
        ("action edit 3 colour red", "Say what to change 'colour': due, priority or text."),
        ("action edit 3 due", "`action edit 3 due` needs the new due."),
        ("action edit 3 due someday", "Due date 'someday' is not a date"),
        ("action edit 3 priority asap", "Unknown priority 'asap'"),
        ("action edit 3 text ask <@U0BOB>", "The text cannot mention anyone"),
    ):
        result = p(text)
        assert isinstance(result, Usage) and result.error.startswith(error), (text, result)
        assert result.usage.startswith("/incident action edit <id> due"), text


def reply(ack) -> dict:
    assert ack.status == 200, (ack.status, ack.body)
    return json.loads(ack.body)


def timeline(engine, ref: str = "INC-1", kind: str = "action.edited") -> list:
    with db.transaction(engine) as s:
        return [e for e in svc.timeline(s, svc.get(s, ref)) if e.kind == kind]


def test_edit_from_the_incident_channel(engine):
    with running_bot(engine) as (_bot, slack):
        reply(slack.driver.slash_command("declare sev2 RPC p99 above 2s"))
        ch = channel_of(engine)
        reply(slack.driver.slash_command("declare sev3 Validators missing attestations"))
        other = channel_of(engine, "INC-2")

        def run(text, channel=ch, user="bob"):
            return reply(slack.driver.slash_command(text, user=user, channel=channel))

        run("action add rotate the RPC API keys due:+3d")  # 1
        run("action add page the provider")  # 2
        run("action done 2")
        run("action add raise the peer limit", channel=other)  # 3, of INC-2
        bob = slack.workspace.user("bob").id
        due = parse_due("+5d", timezone="UTC")
        before_due = parse_due("+3d", timezone="UTC")

        body = run("action edit 1 due +5d")
        assert body["response_type"] == "in_channel"
        assert body["text"] == (
            f"<@{bob}> changed the due date of action item *#1* to *{due.isoformat()}* "
            f"(was {before_due.isoformat()}): rotate the RPC API keys"
        )
        body = run("action edit 1 priority urgent")
        assert "changed the priority of action item *#1* to *urgent* (was medium)" in body["text"]
        body = run("action edit 1 text rotate the keys <!channel> tonight")
        assert body["text"] == (
            f"<@{bob}> changed the text of action item *#1*: rotate the keys &lt;!channel&gt; "
            "tonight\nWas: rotate the RPC API keys"
        )
        body = run("action edit 1 due none")
        assert f"to *no due date* (was {due.isoformat()})" in body["text"]
        with db.transaction(engine) as s:
            one = items.get(s, 1)
            assert (one.text, one.priority, one.due_date) == (
                "rotate the keys <!channel> tonight", "urgent", None
            )  # fmt: skip
        events = timeline(engine)
        assert [(e.data["field"], e.data["old"], e.data["new"]) for e in events] == [
            ("due", before_due.isoformat(), due.isoformat()),
            ("priority", "medium", "urgent"),
            ("text", "rotate the RPC API keys", "rotate the keys <!channel> tonight"),
            ("due", due.isoformat(), None),
        ]
        assert {e.actor for e in events} == {bob}

        # Refusals: said plainly, only to the person who typed them, and nothing changes.
        settled(engine)  # the declares' invitations and announcements are done
        before = (count(engine, "timeline_event"), [_dump(engine, i) for i in (1, 2, 3)])
        for text, message in (
            ("action edit 99 due +3d", "There is no action item #99."),
            ("action edit 3 priority high", "Action item #3 belongs to INC-2, not INC-1."),
            ("action edit 2 priority high",
             "Action item #2 is done: cannot edit its priority; reopen it first."),
            ("action edit 1 priority urgent", "Action item #1's priority is already urgent."),
            ("action edit 1 due yesterday", "Due date 'yesterday' is in the past"),
            ("action edit 1", "Say what to change: due, priority or text."),
        ):  # fmt: skip
            body = run(text)
            assert body["response_type"] == "ephemeral", text
            assert body["text"].startswith(message), (text, body["text"])
            assert "Usage: /incident action edit &lt;id&gt; due" in body["text"], text
        body = run("action edit 1 priority low", channel="incidents")
        assert body["text"].startswith("`/incident action edit` only works in an incident's")
        assert (count(engine, "timeline_event"), [_dump(engine, i) for i in (1, 2, 3)]) == before
        assert "/incident action edit" in run("action")["text"]
        assert_spec_conformance(slack)


def _dump(engine, item_id: int) -> dict:
    with db.transaction(engine) as s:
        return items.get(s, item_id).model_dump()


@pytest.fixture
def clock():
    set_clock(lambda: NOON)
    try:
        yield
    finally:
        set_clock(None)


def test_edit_from_the_command_line(cli, clock, database_url):
    assert cli("db", "upgrade")[0] == 0
    assert cli("incident", "declare", "RPC p99 latency above 2s", "--sev", "2")[0] == 0
    assert cli("actions", "add", "INC-1", "rotate", "the", "keys", "--due", "+3d")[0] == 0
    code, out, err = cli(
        "actions", "edit", "1", "--due", "2026-03-20", "--priority", "high",
        "--text", "rotate the RPC keys", "--as", "carol",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Action item #1 due: 2026-03-20 (was 2026-03-13)",
        "Action item #1 priority: high (was medium)",
        "Action item #1 text: rotate the RPC keys (was rotate the keys)",
    ]
    code, out, _ = cli("actions", "edit", "1", "--due", "none")
    assert out.strip() == "Action item #1 due: - (was 2026-03-20)"
    engine = db.make_engine(database_url)
    try:
        edits = timeline(engine)
        assert [(e.actor, e.data["field"]) for e in edits] == [
            ("carol", "due"), ("carol", "priority"), ("carol", "text"), ("alice", "due")
        ]  # fmt: skip
        # Several fields change together or not at all; each refusal is one line.
        before = (count(engine, "timeline_event"), _dump(engine, 1))
        for argv, message in (
            (("--priority", "low", "--due", "yesterday"), "error: due date 'yesterday' is in the"),
            (("--due", "2026-04-01", "--priority", "asap"), "error: unknown priority 'asap'"),
            (("--text", "   "), "error: the action item's text is empty"),
            ((), "error: nothing to change: give --due, --priority or --text"),
            (("--priority", "high", "-i", "INC-9"), "error: no incident INC-9"),
        ):
            code, _, err = cli("actions", "edit", "1", *argv)
            assert code == 1, argv
            assert err.startswith(message) and err.count("\n") == 1, (argv, err)
        assert (count(engine, "timeline_event"), _dump(engine, 1)) == before
    finally:
        engine.dispose()
