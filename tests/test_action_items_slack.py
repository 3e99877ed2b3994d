"""/incident action and the :ballot_box_with_check: reaction, end to end through the local
Slack server over real sockets; the grammar of ``action`` on its own first."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from incidentbot import db
from incidentbot.action_items import service as items
from incidentbot.action_items.due import parse_due
from incidentbot.clock import set_clock, utcnow
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import ActionItem
from incidentbot.slack.grammar import Command, Usage, help_text, parse
from tests.conftest import count
from tests.slack_harness import (
    assert_spec_conformance,
    channel_of,
    running_bot,
    settled,
    timeline_kinds,
)

TITLE = "RPC p99 latency above 2s on mainnet"


# -- the grammar -------------------------------------------------------------------------------


def p(text: str) -> Command | Usage:
    return parse(text, settings=Settings(), in_incident_channel=True)


def test_action_grammar():
    due = parse_due("+3d", timezone="UTC")
    assert p("action add Rotate the RPC keys <@U0BOB|bob> due:+3d priority:HIGH") == Command(
        "action",
        {"op": "add", "text": "Rotate the RPC keys", "owner": "U0BOB", "due": due,
         "priority": "high"},
    )  # fmt: skip
    assert p("action add “write the runbook”") == Command(
        "action",
        {"op": "add", "text": "write the runbook", "owner": None, "due": None, "priority": None},
    )
    assert p("action add check peers due: +3d").args["due"] == due
    assert p("action list") == Command("action", {"op": "list", "mine": False})
    assert p("action ls mine") == Command("action", {"op": "list", "mine": True})
    assert p("action done #3") == Command("action", {"op": "done", "id": 3})
    assert p("action assign 3 <@U0CAROL>") == Command(
        "action", {"op": "assign", "id": 3, "owner": "U0CAROL"}
    )
    assert p("action won’t 3 superseded by v2") == Command(
        "action", {"op": "wontdo", "id": 3, "reason": "superseded by v2"}
    )
    assert p("action reopen 3") == Command("action", {"op": "reopen", "id": 3})
    assert p("action export 3") == Command("action", {"op": "export", "id": 3})
    assert p("action") == Command("action", {"op": "help"})


@hsettings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["add", "list", "done", "assign", "wontdo", "reopen", "export", "x", ""]),
    st.lists(
        st.one_of(
            st.text(max_size=20),
            st.sampled_from(
                ["<@U1|a>", "due:", "due:+3d", "due:2026-02-30", "priority:", "#3", "@bob", "“"]
            ),
        ),
        max_size=6,
    ),
)
def test_arbitrary_action_arguments_never_raise(op, words):
    result = p(" ".join(["action", op, *words]))
    assert isinstance(result, Command | Usage)
    if isinstance(result, Usage):
        assert result.usage.startswith("/incident action") and result.error


def test_action_appears_in_help_anywhere():
    assert "/incident action add|list|done" in help_text(in_incident_channel=False)
    assert "/incident action add|list|done" in help_text(in_incident_channel=True)


# -- end to end --------------------------------------------------------------------------------


@pytest.fixture
def slack(engine):
    with running_bot(engine) as (_bot, sandbox):
        yield sandbox


def reply(ack) -> dict:
    assert ack.status == 200, (ack.status, ack.body)
    return json.loads(ack.body)


def declare(slack, engine, title=TITLE, user="alice"):
    body = reply(slack.driver.slash_command(f"declare sev2 {title}", user=user))
    assert body["response_type"] == "in_channel"
    ref = body["text"].split("*")[1]
    return ref, channel_of(engine, ref)


def item(engine, item_id) -> ActionItem:
    with db.transaction(engine) as s:
        return items.get(s, item_id)


def test_action_items_from_the_incident_channel(slack, engine):
    _, ch = declare(slack, engine)
    bob, carol = slack.workspace.user("bob").id, slack.workspace.user("carol").id

    def run(text, user="alice", channel=ch):
        return reply(slack.driver.slash_command(text, user=user, channel=channel))

    due = parse_due("+3d", timezone="UTC")
    added = run(f"action add Rotate the RPC API keys <@{bob}|bob> due:+3d priority:high")
    assert added["response_type"] == "in_channel"
    assert "added action item *#1*: Rotate the RPC API keys" in added["text"]
    assert f"owner <@{bob}> · due {due.isoformat()} · high priority" in added["text"]
    assert "#2*" in run("action add write the failover runbook")["text"]
    one = item(engine, 1)
    assert (one.owner, one.due_date, one.priority, one.status) == (bob, due, "high", "open")
    assert one.created_by == slack.workspace.user("alice").id

    listed = run("action list")
    assert listed["response_type"] == "ephemeral"
    assert listed["text"].startswith("*INC-1 action items* (2 open)")
    assert "*#1* Rotate the RPC API keys" in listed["text"] and "no owner" in listed["text"]

    assert f"assigned action item *#2* to <@{carol}>" in run(f"action assign 2 <@{carol}>")["text"]
    assert "marked action item *#1* done" in run("action done 1", user="bob")["text"]
    assert "as won't do" in run("action wontdo 2 superseded by the v2 gateway")["text"]
    assert "reopened action item *#2*" in run("action reopen 2")["text"]
    assert item(engine, 2).owner == carol and item(engine, 1).status == "done"

    # Outside an incident's channel, `action list` is the caller's own open items.
    mine = run("action list", user="carol", channel="incidents")["text"]
    assert mine.startswith("*Your open action items* (1)") and "*#2* INC-1 · " in mine
    assert run("action list", user="bob", channel="incidents")["text"].startswith(
        "You own no open action items."
    )
    assert "/incident action wontdo" in run("action")["text"]

    # Three days on, an item due tomorrow is shown overdue, with by how long.
    run("action add check the peers due:+1d")
    later = utcnow() + timedelta(days=3)
    set_clock(lambda: later)
    try:
        listed = run("action list")["text"]
    finally:
        set_clock(None)
    assert "*#3* check the peers" in listed and ":warning: *overdue by 2 days*" in listed
    assert listed.startswith("*INC-1 action items* (2 open, 1 overdue)")

    kinds = [k for k in timeline_kinds(engine) if k.startswith("action.")]
    assert kinds == [
        "action.added",
        "action.added",
        "action.assigned",
        "action.done",
        "action.wont_do",
        "action.reopened",
        "action.added",
    ]
    assert_spec_conformance(slack)


def test_bad_input_gets_its_own_message_and_changes_nothing(slack, engine):
    _, ch = declare(slack, engine)
    _, other_ch = declare(slack, engine, title="Validators missing attestations")
    bob = slack.workspace.user("bob").id
    bot = slack.workspace.bot.id

    def run(text, channel=ch):
        return reply(slack.driver.slash_command(text, user="bob", channel=channel))

    run("action add rotate the RPC API keys")  # 1
    run("action add page the provider")  # 2
    run("action done 2")
    run("action add raise the peer limit", channel=other_ch)  # 3, of INC-2
    settled(engine)
    before = (count(engine, "timeline_event"), count(engine, "action_item"))
    states = [item(engine, i).model_dump() for i in (1, 2, 3)]
    cases = [
        ("action frobnicate 1", "Unknown action subcommand `frobnicate`."),
        ("action add", "`action add` needs the text of the item."),
        ("action add fix it due:2026-13-40",
         "Due date '2026-13-40' is not a real date (month must be in 1..12)"),
        ("action add fix it due:yesterday", "Due date 'yesterday' is in the past ("),
        ("action add fix it due:someday", "Due date 'someday' is not a date: use YYYY-MM-DD"),
        ("action add fix it due:+3d due:+4d", "`due:` is given twice."),
        ("action add fix it priority:asap", "Unknown priority 'asap': use low, medium, high"),
        ("action add fix it <@U0NOBODY00>",
         "U0NOBODY00 is not a user in this Slack workspace: mention someone who is."),
        (f"action add fix it <@{bot}>", f"<@{bot}> is a bot: give the item to a person."),
        (f"action add fix it <@{bob}> <@{bot}>", "Mention at most one owner"),
        ("action add fix it @bob", "'@bob' is not a Slack mention"),
        ("action done", "`action done` needs an item id, like `action done 3`."),
        ("action done one", "'one' is not an action item id: use its number, e.g. 12."),
        ("action done 99", "There is no action item #99."),
        ("action done 3", "Action item #3 belongs to INC-2, not INC-1."),
        ("action done 2", "Action item #2 is already done (since "),
        ("action assign 1", "Mention the new owner, like @alice."),
        ("action assign 1 <@U0NOBODY00>", "U0NOBODY00 is not a user in this Slack workspace"),
        ("action assign 3 <@U0NOBODY00>", "U0NOBODY00 is not a user in this Slack workspace"),
        (f"action assign 3 <@{bob}>", "Action item #3 belongs to INC-2, not INC-1."),
        (f"action assign 2 <@{bob}>", "Action item #2 is done: cannot assign it; reopen it first."),
        ("action wontdo 1", "`action wontdo` needs a reason: why it will not be done."),
        ("action wontdo 2 not needed", "Action item #2 is done: cannot mark it won't do"),
        ("action reopen 1", "Action item #1 is already open."),
        ("action reopen 1 now", "`action reopen` takes only the item id."),
        ("action list everything", "`action list` takes only `mine`, not 'everything'."),
        ("action export 1", "Exporting to GitHub is not configured: set action_items.github_repo"),
    ]  # fmt: skip
    for text, message in cases:
        body = run(text)
        assert body["response_type"] == "ephemeral", text
        assert body["text"].startswith(message), (text, body["text"])
        assert "Usage: /incident action" in body["text"], text
    for text in ("action add fix it", "action done 1", "action export 1"):
        body = run(text, channel="incidents")
        assert "only works in an incident's channel" in body["text"], text
    assert (count(engine, "timeline_event"), count(engine, "action_item")) == before
    assert [item(engine, i).model_dump() for i in (1, 2, 3)] == states
    # The unknown user was asked about, not assumed: users.info went to Slack.
    asked = [r.args.get("user") for r in slack.requests("users.info")]
    assert "U0NOBODY00" in asked and bot in asked


def test_a_ballot_box_reaction_makes_the_message_an_action_item_once(slack, engine):
    _, ch = declare(slack, engine)
    alice, bob = slack.workspace.user("alice").id, slack.workspace.user("bob").id
    slack.driver.join_channel("bob", ch)
    msg, _ = slack.driver.post_message("alice", ch, "we need an alert on peer count below 10")
    acks = slack.driver.add_reaction("bob", ch, msg.ts, "ballot_box_with_check")
    slack.driver.redeliver(acks[0])  # Slack retrying the event
    slack.driver.add_reaction("carol", ch, msg.ts, "ballot_box_with_check")  # a second tick
    slack.driver.add_reaction("carol", ch, msg.ts, "eyes")  # not a tick
    # The bot answers an event only once it has recorded it: the item exists here.
    with db.transaction(engine) as s:
        views = items.list_items(s, Settings(), status=None)
        added = [e for e in svc.timeline(s, svc.get(s, "INC-1")) if e.kind == "action.added"]
    assert len(views) == 1
    made = views[0].item
    assert made.text == "we need an alert on peer count below 10"
    assert (made.created_by, made.owner, made.status) == (bob, None, "open")
    assert made.source_key == f"reaction:{slack.workspace.channel(ch).id}:{msg.ts}"
    assert len(added) == 1 and added[0].actor == bob
    assert added[0].data["message_author"] == alice
    told = [e.text for e in slack.ephemeral("bob")]
    assert any("Action item *#1* added to INC-1 from that message" in t for t in told), told
    assert not [e for e in slack.ephemeral("carol") if "Action item" in e.text]

    # Someone outside the channel can tick too: the item is made, only the private
    # confirmation cannot reach them (Slack shows ephemeral messages to members only).
    second, _ = slack.driver.post_message("alice", ch, "document the failover")
    slack.driver.add_reaction("dave", ch, second.ts, "ballot_box_with_check")
    assert item(engine, 2).created_by == slack.workspace.user("dave").id

    # Outside an incident's channel, the reaction is only a reaction.
    other, _ = slack.driver.post_message("alice", "incidents", "unrelated chatter")
    slack.driver.add_reaction("bob", "incidents", other.ts, "ballot_box_with_check")
    assert count(engine, "action_item") == 2
