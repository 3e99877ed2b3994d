"""The transcript reads like Slack: names not ids, edits applied, pins, threads, private notes."""

from __future__ import annotations

from incidentbot.sandbox.slack import Workspace
from incidentbot.sandbox.slack.transcript import plain, render, render_blocks, snapshot


def test_markup_becomes_names() -> None:
    ws = Workspace()
    alice = ws.user("alice")
    digest = ws.channel("incidents")
    [oncall] = ws.usergroups.values()
    text = (
        f"<@{alice.id}> paged <!subteam^{oncall.id}|@oncall-rpc> in <#{digest.id}|incidents>, "
        "<!here>, see <https://status.example/rpc|status page>"
    )
    assert plain(ws, text) == (
        "@alice paged @oncall-rpc in #incidents, @here, see status page (https://status.example/rpc)"
    )


def test_blocks_render_as_text() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "SEV1: RPC down"}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "Nodes behind"},
            "fields": [{"type": "mrkdwn", "text": "*Status* investigating"}],
            "accessory": {
                "type": "button",
                "text": {"type": "plain_text", "text": "Runbook"},
                "action_id": "rb",
            },
        },
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "declared by alice"}]},
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Ack"}, "action_id": "a"}
            ],
        },
    ]
    assert render_blocks(blocks) == [
        "## SEV1: RPC down",
        "Nodes behind",
        "  • *Status* investigating",
        "  [Runbook]",
        "---",
        "  declared by alice",
        "[Ack]",
    ]


def test_channel_snapshot_and_text() -> None:
    ws = Workspace()
    alice, bob = ws.user("alice"), ws.user("bob")
    channel = ws.add_channel("inc-3-disk", creator=ws.bot.id, members=[ws.bot.id, alice.id, bob.id])
    channel.topic.value = f"SEV2 · IC <@{alice.id}>"
    header = ws.post(channel, ws.bot, "SEV2 declared")
    header.text, header.edits, header.pinned = "SEV1 declared", 1, True
    note = ws.post(channel, bob, "disk at 97% on node-3")
    ws.post(channel, alice, "clearing logs", thread_ts=note.ts)
    note.reactions["pushpin"] = [alice.id]
    ws.post_ephemeral(channel.id, alice.id, "You are the commander", [], via="chat.postEphemeral")
    snap = snapshot(ws, channel)
    assert snap.topic == "SEV2 · IC @alice"
    assert snap.members == ["Incident Bot", "alice", "bob"]
    assert [m.author for m in snap.messages] == ["Incident Bot", "bob", "Incident Bot"]
    assert snap.pinned[0].text == "SEV1 declared" and snap.pinned[0].edited
    assert snap.messages[1].replies[0].text == "clearing logs"
    assert snap.messages[2].only_visible_to == "alice"
    text = render(ws, "inc-3-disk")
    for expected in (
        "#inc-3-disk",
        "Topic:   SEV2 · IC @alice",
        "Incident Bot  (edited)  [pinned]",
        "reactions: :pushpin: alice",
        "↳ ",
        "(only visible to alice)",
    ):
        assert expected in text
    assert "SEV2 declared" not in text
    everything = render(ws)
    assert "#inc-3-disk" in everything and "#general" not in everything
    assert "#general" in render(ws, include_empty=True)
