"""Each Slack renderer with each entry of the hostile corpus: what was typed is shown as typed.

The end-to-end test (``test_slack_hostile_e2e.py``) runs the hostile text through the bot and
the local Slack server; these run every corpus entry through each renderer, and pin the few
pieces of markup the bot builds itself (mentions of its people, channel links, date tokens).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from incidentbot.chat_text import mention, mrkdwn, mrkdwn_clipped, mrkdwn_keeping, mrkdwn_people
from incidentbot.config import Settings
from incidentbot.handoff import service as handoff
from incidentbot.handoff.config import HandoffSettings
from incidentbot.incidents.models import Incident, RoleAssignment, TimelineEvent
from incidentbot.runbooks.view import RunView, StepView
from incidentbot.slack import blocks, runbook_blocks
from incidentbot.slack.grammar import parse
from tests.hostile_corpus import CORPUS, LIVE_TOKEN, SPECIAL

T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
ALICE, BOB = "U0ALICE001", "U0BOB00001"
IDS = [pytest.param(text, id=what[:40]) for text, what in CORPUS]


def mrkdwn_texts(value: Any) -> list[str]:
    """Every text Slack reads for markup: block texts other than plain_text, and the rest."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        if value.get("type") == "plain_text":
            return []
        return [t for v in value.values() for t in mrkdwn_texts(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in mrkdwn_texts(v)]
    return []


def markup(rendered: Any, allowed: tuple[str, ...] = ()) -> list[str]:
    found = []
    for text in mrkdwn_texts(rendered):
        found += [m.group(0) for m in LIVE_TOKEN.finditer(text) if m.group(0) not in allowed]
        found += [s for s in SPECIAL if s in text]
    return [f for f in found if not f.startswith("<!date^")]


def incident(text: str) -> Incident:
    return Incident(
        id=1,
        number=7,
        title=text[:200],
        description=text,
        severity="SEV2",
        status="resolved",
        fields={"chain": text},
        commander=ALICE,
        declared_by=ALICE,
        resolution_summary=text,
        channel_id="C0INCIDENT",
        created_at=T0,
        updated_at=T0,
        declared_at=T0,
        resolved_at=T0 + timedelta(hours=1),
    )


def event(summary: str, *, kind: str = "note", actor: str = BOB, **data: Any) -> TimelineEvent:
    return TimelineEvent(
        id=3,
        incident_id=1,
        occurred_at=T0,
        recorded_at=T0,
        kind=kind,
        actor=actor,
        summary=summary,
        data=data,
    )


@pytest.mark.parametrize("text", IDS)
def test_incident_messages_show_typed_text_as_typed(text):
    inc = incident(text)
    roles = [
        RoleAssignment(
            incident_id=1, role="commander", user=ALICE, assigned_by=ALICE, started_at=T0
        )
    ]
    rendered = [
        blocks.header(inc, roles),
        blocks.digest(inc, inc.channel_id),
        blocks.status_update(inc, event(text, kind="status.update")),
        blocks.summary(inc, roles, T0 + timedelta(hours=2)),
        blocks.timeline(inc, [event(text), event(f"Resolved: {text}", actor=ALICE)]),
    ]
    allowed = (f"<@{ALICE}>", f"<@{BOB}>", "<#C0INCIDENT>")
    assert markup(rendered, allowed) == []
    # What people read, once Slack decodes the entities, is exactly what was typed.
    shown = html.unescape("\n".join(mrkdwn_texts(rendered)))
    assert text[:2000] in shown
    for _, blks in rendered:
        assert_valid_blocks(blks)


def assert_valid_blocks(blks: list[dict[str, Any]]) -> None:
    """Slack would take them: slack_sdk's models parse and validate each block, and render
    it back unchanged (the answers' builders write plain dicts)."""
    assert 0 < len(blks) <= 50
    for block in blks:
        model = Block.parse(block)
        assert model is not None, block
        model.validate_json()
        assert model.to_dict() == block


def test_a_long_timeline_and_summary_stay_within_slacks_limits():
    long = "x" * 2990
    inc = incident("y" * 400)
    events = [event(f"{long} {i}") for i in range(60)]
    text, blks = blocks.timeline(inc, events, limit=60)
    assert_valid_blocks(blks)
    assert text == "INC-7 timeline"
    assert sum(b["type"] == "section" for b in blks) > 2  # split into several sections
    roles = [
        RoleAssignment(incident_id=1, role="scribe", user=BOB, assigned_by=ALICE, started_at=T0)
        for _ in range(200)
    ]
    _, blks = blocks.summary(inc, roles, T0 + timedelta(days=3))
    assert_valid_blocks(blks)


@pytest.mark.parametrize("text", IDS)
def test_runbook_messages_show_params_and_errors_as_typed(text):
    view = RunView(
        run_id=4,
        runbook="announce",
        description="Post a message",
        status="needs_attention",
        requester=ALICE,
        params={"message": text},
        target=text[:100],
        approval="none",
        approvals_needed=0,
        approvals=[],
        deadline=None,
        steps=[StepView(0, "post", text[:80], "failed", detail=f"{text} by {BOB}")],
        error=f"slack.post failed for U0EVIL00001: {text}",  # an id typed as a param
        incident_ref="INC-7",
        created_at=T0,
        finished_at=None,
        now=T0,
        channel_id="C0INCIDENT",
        message_ts=None,
        commander=ALICE,
    )
    rendered = runbook_blocks.run_message(view, "https://bot.example/runs/4")
    allowed = (f"<@{ALICE}>", f"<@{BOB}>", "<https://bot.example/runs/4|run 4>")
    assert markup(rendered, allowed) == []
    assert f"<@{BOB}>" in str(rendered)  # the record's user id is still a mention
    assert markup(runbook_blocks.plan_message([f"message={text}"])) == []


def test_a_timeline_mentions_the_people_of_its_entries_and_no_typed_ones():
    inc = incident("RPC down")
    # The core names people by id and lists them in the data; Slack shows them as mentions.
    invited = event(f"Invited {ALICE}, {BOB}", kind="responders.invited", users=[ALICE, BOB])
    typed = event("ping <@U0EVIL001> and <@U0BOB00001|boss> <!here> <#C0EVIL001>")
    text = str(blocks.timeline(inc, [invited, typed]))
    assert f"Invited <@{ALICE}>, <@{BOB}>" in text
    assert "&lt;@U0EVIL001&gt;" in text  # nobody who takes part: text
    assert "&lt;@U0BOB00001|boss&gt;" in text  # a labelled mention is never the bot's
    assert "&lt;!here&gt; &lt;#C0EVIL001&gt;" in text


def test_the_one_escaping_function():
    assert mrkdwn("<!here> & <@U1|x>") == "&lt;!here&gt; &amp; &lt;@U1|x&gt;"
    assert mrkdwn("&lt;") == "&amp;lt;"  # an entity typed is shown as typed, not decoded
    assert mrkdwn("*bold* _it_ ✓") == "*bold* _it_ ✓"
    assert mention("U0ALICE001") == "<@U0ALICE001>"
    assert mention("slack:U0ALICE001") == "<@U0ALICE001>"
    assert mention("<!channel> from the CLI") == "&lt;!channel&gt; from the CLI"
    # Core text names people by id and lists them: only those become mentions; a mention
    # someone typed stays text.
    people = ["slack:U0ALICE001", "bob", None]
    assert mrkdwn_people("U0ALICE001 invited U0EVIL001 and bob <@U0EVIL001>", people) == (
        "<@U0ALICE001> invited U0EVIL001 and bob &lt;@U0EVIL001&gt;"
    )
    keep = {"<!subteam^S0RPC>"}
    assert mrkdwn_keeping("<@U0EVIL001> <!subteam^S0RPC>", keep) == (
        "&lt;@U0EVIL001&gt; <!subteam^S0RPC>"
    )
    assert mrkdwn_keeping("<!subteam^S0RPC|@all>", keep) == "&lt;!subteam^S0RPC|@all&gt;"
    # Clipping never leaves half an entity behind.
    assert mrkdwn_clipped("ab<c", 4) == "ab"
    assert mrkdwn_clipped("ab<c", 6) == "ab&lt;"


@pytest.mark.parametrize("text", IDS)
def test_refusals_quote_what_was_typed_as_text(text):
    settings = Settings()
    for typed in (f"frobnicate{text}", f"assign {text}", f"declare sev9 {text}"):
        usage = parse(typed, settings=settings, in_incident_channel=True)
        assert markup(usage.text()) == [], typed  # type: ignore[union-attr]


@pytest.mark.parametrize("text", IDS)
def test_the_handoff_shows_names_notes_and_titles_as_typed(text):
    rotation = HandoffSettings(
        rotations=[
            {"name": "rpc", "schedule_id": "P0SCHED", "channel": "oncall", "cron": "0 9 * * MON"}
        ]
    ).rotation("rpc")
    h = handoff.Handoff(
        rotation,
        handoff.Shift(T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)),
        outgoing=[handoff.Person(text[:80])],  # PagerDuty's name, nobody in Slack
        incoming=[handoff.Person("Bob", slack_id=BOB)],
        problems=[f"Slack did not answer for {text}"],
        open_incidents=[
            {
                "ref": "INC-7",
                "severity": "SEV2",
                "status": "triage",
                "age": "1h",
                "new": True,
                "commander": mention(text[:80]),  # a name typed at the command line
                "title": text,
                "channel": "<#C0INCIDENT>",
            }
        ],
        resolved=[
            {"ref": "INC-6", "severity": "SEV3", "resolved_at": "Mon", "took": "2h", "title": text}
        ],
        overdue_items=[
            {"id": 1, "incident": "INC-6", "text": text, "owner": mention(ALICE), "due": "Sun"}
        ],
        postmortems_due=[
            {
                "incident": "INC-6",
                "due": "Fri",
                "overdue": False,
                "status": "draft",
                "owner": mention(ALICE),
                "title": text,
            }
        ],
        alert_count=1,
        alert_groups=[{"name": text, "count": 1}],
        alert_group_count=1,
        notes=[{"by": mention(ALICE), "at": "Mon 09:00 UTC", "text": text}],
    )
    rendered = handoff.render(h)
    assert markup(rendered, (f"<@{ALICE}>", f"<@{BOB}>", "<#C0INCIDENT>")) == []
    assert f"commander {mrkdwn(text[:80])}" in rendered and "<#C0INCIDENT>" in rendered
    # Read as typed in three titles, the item, the alert group, the note and the problem, and
    # (when it is short enough to be a name) the outgoing on-call's and the commander's names.
    assert html.unescape(rendered).count(text) == (9 if len(text) <= 80 else 7)


def test_an_alert_source_link_can_neither_close_itself_nor_start_another():
    from incidentbot.slack.alert_blocks import _link

    assert _link("http://x|<!channel> y", "graph") == " <http://x%7C&lt;!channel&gt;%20y|graph>"
    assert _link("javascript:alert(1)", "graph") == ""
    assert _link(None, "graph") == ""
