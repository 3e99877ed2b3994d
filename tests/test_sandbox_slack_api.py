"""The local Slack server's Web API, exercised over real HTTP with slack_sdk's WebClient."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from incidentbot.sandbox.slack import SlackSandbox
from tests import slack_sandbox_fixtures

server, slack = slack_sandbox_fixtures.server, slack_sandbox_fixtures.slack  # fixtures


@pytest.fixture
def client(slack: SlackSandbox) -> WebClient:
    return slack.web_client()


def error_of(call: Callable[..., Any], **kwargs: Any) -> str:
    """The Slack error code ``call(**kwargs)`` fails with (it must fail, with HTTP 200)."""
    with pytest.raises(SlackApiError) as info:
        call(**kwargs)
    assert info.value.response.status_code == 200
    return info.value.response["error"]


def uid(slack: SlackSandbox, name: str) -> str:
    return slack.workspace.user(name).id


def cid(slack: SlackSandbox, name: str) -> str:
    return slack.workspace.channel(name).id


def new_channel(client: WebClient, name: str = "inc-1-rpc-down", **kw: Any) -> str:
    return client.conversations_create(name=name, **kw)["channel"]["id"]


# -- auth and transport ------------------------------------------------------------------


def test_auth_test_identifies_the_bot_user(slack: SlackSandbox, client: WebClient) -> None:
    data = client.auth_test().data
    assert data["user_id"] == slack.workspace.bot.id
    assert data["bot_id"].startswith("B")
    assert data["team_id"] == slack.workspace.team_id


def test_missing_or_wrong_token_is_refused(slack: SlackSandbox) -> None:
    assert error_of(WebClient(base_url=slack.base_url).auth_test) == "not_authed"
    wrong = WebClient(base_url=slack.base_url, token="xoxb-not-a-real-token")
    assert error_of(wrong.auth_test) == "invalid_auth"


def test_form_json_and_query_bodies_are_all_read(slack: SlackSandbox) -> None:
    url = slack.base_url + "conversations.create"
    bearer = {"Authorization": f"Bearer {slack.bot_token}"}
    as_json = httpx.post(url, json={"name": "from-json"}, headers=bearer).json()
    as_form = httpx.post(url, data={"name": "from-form", "token": slack.bot_token}).json()
    as_query = httpx.get(url, params={"name": "from-query"}, headers=bearer).json()
    assert [as_json["ok"], as_form["ok"], as_query["ok"]] == [True, True, True]
    # Slack never reads a token from a JSON body.
    refused = httpx.post(url, json={"name": "x", "token": slack.bot_token}).json()
    assert refused == {"ok": False, "error": "not_authed"}
    assert (
        httpx.post(
            url, content=b"{nope", headers={**bearer, "Content-Type": "application/json"}
        ).json()["error"]
        == "invalid_json"
    )
    assert slack.requests("conversations.create")[1].token_source == "body"


def test_unknown_method_is_reported(slack: SlackSandbox, client: WebClient) -> None:
    assert error_of(lambda: client.api_call("conversations.teleport")) == "unknown_method"


# -- the seeded workspace ------------------------------------------------------------------


def test_seeded_workspace_has_people_a_group_and_the_digest_channel(
    slack: SlackSandbox, client: WebClient
) -> None:
    members = client.users_list()["members"]
    humans = {m["name"]: m for m in members if not m["is_bot"]}
    assert {"alice", "bob", "carol", "dave", "erin"} <= set(humans)
    assert all(m["profile"]["email"].endswith("@nodeworks.example") for m in humans.values())
    assert humans["carol"]["profile"]["display_name"] == "carol"
    groups = client.usergroups_list(include_users=True)["usergroups"]
    oncall = next(g for g in groups if g["handle"] == "oncall-rpc")
    assert oncall["id"].startswith("S")
    assert set(oncall["users"]) == {uid(slack, "bob"), uid(slack, "carol")}
    listed = {c["name"]: c for c in client.conversations_list()["channels"]}
    assert listed["incidents"]["is_member"] is True
    assert listed["general"]["is_member"] is False


# -- conversations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "invalid_name_required"),
        ("a" * 81, "invalid_name_maxlength"),
        ("Inc-1", "invalid_name_specials"),
        ("inc 1", "invalid_name_specials"),
        ("inc.1", "invalid_name_specials"),
        ("inc#1", "invalid_name_specials"),
        ("ínc-1", "invalid_name_specials"),
        ("--__", "invalid_name_punctuation"),
    ],
)
def test_channel_name_rules(client: WebClient, name: str, error: str) -> None:
    assert error_of(client.conversations_create, name=name) == error


@pytest.mark.parametrize("name", ["a" * 80, "inc_2024-01-rpc", "7", "inc-42"])
def test_valid_channel_names_are_accepted(client: WebClient, name: str) -> None:
    channel = client.conversations_create(name=name)["channel"]
    assert channel["name"] == name
    assert channel["id"].startswith("C")
    assert channel["is_member"] is True


def test_name_taken_also_by_archived_channels(client: WebClient) -> None:
    channel = new_channel(client, "inc-7")
    assert error_of(client.conversations_create, name="inc-7") == "name_taken"
    client.conversations_archive(channel=channel)
    assert error_of(client.conversations_create, name="inc-7") == "name_taken"
    assert error_of(client.conversations_create, name="incidents") == "name_taken"


def test_private_channels_are_invisible_to_non_members(
    slack: SlackSandbox, client: WebClient
) -> None:
    mine = new_channel(client, "inc-private", is_private=True)
    assert client.conversations_info(channel=mine)["channel"]["is_private"] is True
    theirs = slack.workspace.add_channel("hr-only", creator=uid(slack, "alice"), is_private=True)
    assert error_of(client.conversations_info, channel=theirs.id) == "channel_not_found"
    assert error_of(client.conversations_info, channel="C0NOPE00000") == "channel_not_found"
    names = [c["name"] for c in client.conversations_list(types="private_channel")["channels"]]
    assert names == ["inc-private"]


def test_invite_and_its_errors(slack: SlackSandbox, client: WebClient) -> None:
    channel = new_channel(client)
    alice, bob = uid(slack, "alice"), uid(slack, "bob")
    invited = client.conversations_invite(channel=channel, users=[alice, bob])
    assert invited["channel"]["num_members"] == 3
    assert set(client.conversations_members(channel=channel)["members"]) == {
        slack.workspace.bot.id,
        alice,
        bob,
    }
    invite = client.conversations_invite
    assert error_of(invite, channel=channel, users=[alice]) == "already_in_channel"
    assert error_of(invite, channel=channel, users=["U0NOBODY000"]) == "user_not_found"
    me = slack.workspace.bot.id
    assert error_of(invite, channel=channel, users=[me]) == "cant_invite_self"
    assert error_of(invite, channel=channel, users=[]) == "no_user"
    general = cid(slack, "general")
    assert error_of(invite, channel=general, users=[alice]) == "not_in_channel"
    assert error_of(invite, channel="C0NOPE00000", users=[alice]) == "channel_not_found"
    client.conversations_archive(channel=channel)
    carol = uid(slack, "carol")
    assert error_of(invite, channel=channel, users=[carol]) == "is_archived"


def test_join(slack: SlackSandbox, client: WebClient) -> None:
    general = cid(slack, "general")
    assert client.conversations_join(channel=general)["channel"]["is_member"] is True
    again = client.conversations_join(channel=general)
    assert again["warning"] == "already_in_channel"
    private = slack.workspace.add_channel("sec", creator=slack.workspace.bot.id, is_private=True)
    assert (
        error_of(client.conversations_join, channel=private.id)
        == "method_not_supported_for_channel_type"
    )
    archived = new_channel(client, "old")
    client.conversations_archive(channel=archived)
    assert error_of(client.conversations_join, channel=archived) == "is_archived"


def test_topic_and_purpose(slack: SlackSandbox, client: WebClient) -> None:
    channel = new_channel(client)
    topic = client.conversations_setTopic(channel=channel, topic="SEV1 · investigating")
    assert topic["channel"]["topic"]["value"] == "SEV1 · investigating"
    assert topic["channel"]["topic"]["creator"] == slack.workspace.bot.id
    client.conversations_setPurpose(channel=channel, purpose="RPC nodes lagging")
    snap = slack.snapshot(channel)
    assert (snap.topic, snap.purpose) == ("SEV1 · investigating", "RPC nodes lagging")
    too_long = "x" * 251
    assert error_of(client.conversations_setTopic, channel=channel, topic=too_long) == "too_long"
    general = cid(slack, "general")
    assert (
        error_of(client.conversations_setPurpose, channel=general, purpose="x") == "not_in_channel"
    )
    client.conversations_archive(channel=channel)
    assert error_of(client.conversations_setTopic, channel=channel, topic="x") == "is_archived"


def test_archive(slack: SlackSandbox, client: WebClient) -> None:
    channel = new_channel(client)
    assert client.conversations_archive(channel=channel)["ok"] is True
    assert client.conversations_info(channel=channel)["channel"]["is_archived"] is True
    assert error_of(client.conversations_archive, channel=channel) == "already_archived"
    theirs = slack.workspace.add_channel("watercooler", creator=uid(slack, "alice")).id
    assert error_of(client.conversations_archive, channel=theirs) == "not_in_channel"
    general = cid(slack, "general")
    assert error_of(client.conversations_archive, channel=general) == "cant_archive_general"
    listed = client.conversations_list(exclude_archived=True)["channels"]
    assert channel not in [c["id"] for c in listed]


def test_members_and_users_paginate_with_cursors(slack: SlackSandbox, client: WebClient) -> None:
    digest = cid(slack, "incidents")
    first = client.conversations_members(channel=digest, limit=4)
    cursor = first["response_metadata"]["next_cursor"]
    assert len(first["members"]) == 4 and cursor
    rest = client.conversations_members(channel=digest, limit=4, cursor=cursor)
    assert rest["response_metadata"]["next_cursor"] == ""
    assert len(first["members"]) + len(rest["members"]) == 6
    page = client.users_list(limit=2)
    assert len(page["members"]) == 2 and page["response_metadata"]["next_cursor"]
    assert (
        error_of(client.conversations_members, channel=digest, cursor="garbage") == "invalid_cursor"
    )
    assert error_of(client.conversations_list, types="public_channel,bogus") == "invalid_types"


def test_history_is_newest_first_without_thread_replies(
    slack: SlackSandbox, client: WebClient
) -> None:
    channel = new_channel(client)
    assert client.conversations_history(channel=channel)["messages"] == []
    sent = [client.chat_postMessage(channel=channel, text=f"m{n}")["ts"] for n in range(4)]
    client.chat_postMessage(channel=channel, text="reply", thread_ts=sent[0])
    history = client.conversations_history(channel=channel)
    assert [m["text"] for m in history["messages"]] == ["m3", "m2", "m1", "m0"]
    page = client.conversations_history(channel=channel, limit=2)
    assert [m["text"] for m in page["messages"]] == ["m3", "m2"] and page["has_more"] is True
    older = client.conversations_history(
        channel=channel, latest=sent[2], oldest=sent[0], inclusive=True
    )
    assert [m["text"] for m in older["messages"]] == ["m2", "m1", "m0"]
    assert error_of(client.conversations_history, channel="C0NOPE00000") == "channel_not_found"


# -- chat ----------------------------------------------------------------------------------

HEADER = [
    {"type": "header", "text": {"type": "plain_text", "text": "SEV1: RPC nodes lagging"}},
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "*Commander* <@{alice}>"},
        "fields": [{"type": "mrkdwn", "text": "*Status*\ninvestigating"}],
    },
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "action_id": "ack",
                "value": "inc-1",
            }
        ],
    },
]


def header_blocks(slack: SlackSandbox) -> list[dict[str, Any]]:
    return json.loads(json.dumps(HEADER).replace("{alice}", uid(slack, "alice")))


def test_post_message_with_blocks_shows_in_the_transcript(
    slack: SlackSandbox, client: WebClient
) -> None:
    channel = new_channel(client)
    posted = client.chat_postMessage(
        channel=channel, text="SEV1 declared", blocks=header_blocks(slack)
    )
    assert posted["channel"] == channel
    assert posted["message"]["bot_id"] == slack.workspace.bot_id
    assert len(posted["ts"]) == 17 and posted["ts"][10] == "."
    [shown] = slack.snapshot(channel).messages
    assert shown.author == "Incident Bot"
    assert "## SEV1: RPC nodes lagging" in shown.text
    assert "*Commander* @alice" in shown.text
    assert "[Acknowledge]" in shown.text
    by_name = client.chat_postMessage(channel="#incidents", text="digest line")
    assert by_name["channel"] == cid(slack, "incidents")


def test_post_message_by_bare_name_like_slack(slack: SlackSandbox, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="incidents", text="by its bare name")
    assert posted["channel"] == cid(slack, "incidents")
    assert slack.snapshot("incidents").texts()[-1] == "by its bare name"
    private = new_channel(client, "inc-named-private", is_private=True)
    assert client.chat_postMessage(channel="inc-named-private", text="x")["channel"] == private
    slack.workspace.add_channel("hr-by-name", creator=uid(slack, "alice"), is_private=True)
    post = client.chat_postMessage
    assert error_of(post, channel="hr-by-name", text="x") == "channel_not_found"
    assert error_of(post, channel="no-such-channel", text="x") == "channel_not_found"
    assert error_of(post, channel="general", text="x") == "not_in_channel"


def test_post_message_errors(slack: SlackSandbox, client: WebClient) -> None:
    post = client.chat_postMessage
    assert error_of(post, channel=cid(slack, "general"), text="x") == "not_in_channel"
    assert error_of(post, channel="C0NOPE00000", text="x") == "channel_not_found"
    channel = new_channel(client)
    assert (
        error_of(lambda: client.api_call("chat.postMessage", json={"channel": channel}))
        == "no_text"
    )
    assert error_of(post, channel=channel, text="x" * 40_001) == "msg_too_long"
    client.conversations_archive(channel=channel)
    assert error_of(post, channel=channel, text="x") == "is_archived"


@pytest.mark.parametrize(
    ("blocks", "why"),
    [
        ([{"type": "bogus"}], "unknown block type"),
        ([{"type": "section", "txt": {"type": "mrkdwn", "text": "x"}}], "text or fields"),
        ([{"type": "section", "text": "bare string"}], "text object"),
        ([{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}], "150"),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}], "plain_text"),
        (
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "mrkdwn", "text": "x"},
                            "action_id": "a",
                        }
                    ],
                }
            ],
            "plain_text",
        ),
        ([{"type": "divider"}] * 51, "50"),
        ({"type": "divider"}, "array"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "x"}, "colour": "red"}], "colour"),
    ],
)
def test_invalid_blocks_are_refused_with_a_reason(
    slack: SlackSandbox, client: WebClient, blocks: Any, why: str
) -> None:
    channel = new_channel(client)
    with pytest.raises(SlackApiError) as info:
        client.api_call(
            "chat.postMessage", json={"channel": channel, "text": "x", "blocks": blocks}
        )
    assert info.value.response["error"] == "invalid_blocks"
    assert why in info.value.response["response_metadata"]["messages"][0]
    assert slack.snapshot(channel).messages == []


def test_update_edits_in_place(slack: SlackSandbox, client: WebClient) -> None:
    channel = new_channel(client)
    ts = client.chat_postMessage(
        channel=channel, text="investigating", blocks=header_blocks(slack)
    )["ts"]
    blocks = header_blocks(slack)
    blocks[1]["fields"][0]["text"] = "*Status*\nmitigated"
    updated = client.chat_update(channel=channel, ts=ts, text="mitigated", blocks=blocks)
    assert updated["ts"] == ts and updated["text"] == "mitigated"
    [shown] = slack.snapshot(channel).messages
    assert shown.edited is True and "mitigated" in shown.text and "investigating" not in shown.text
    update = client.chat_update
    assert (
        error_of(update, channel=channel, ts="1700000000.000001", text="x") == "message_not_found"
    )
    bad = [{"type": "section"}]
    assert error_of(update, channel=channel, ts=ts, text="x", blocks=bad) == "invalid_blocks"
    human, _ = slack.driver.post_message("alice", "incidents", "hello", deliver=False)
    digest = cid(slack, "incidents")
    assert error_of(update, channel=digest, ts=human.ts, text="x") == "cant_update_message"
    client.conversations_archive(channel=channel)
    assert error_of(update, channel=channel, ts=ts, text="x") == "is_inactive"


def test_ephemeral_messages_are_kept_per_user(slack: SlackSandbox, client: WebClient) -> None:
    digest, alice = cid(slack, "incidents"), uid(slack, "alice")
    assert client.chat_postEphemeral(channel=digest, user=alice, text="only for alice")[
        "message_ts"
    ]
    assert [e.text for e in slack.ephemeral("alice")] == ["only for alice"]
    assert slack.ephemeral("bob") == []
    assert "(only visible to alice)" in slack.transcript("incidents")
    outsider = slack.workspace.add_user("zed", "Zed Outsider", "zed", email="zed@else.example")
    assert (
        error_of(client.chat_postEphemeral, channel=digest, user=outsider.id, text="x")
        == "user_not_in_channel"
    )


def test_permalink_points_at_a_page_showing_the_message(
    slack: SlackSandbox, client: WebClient
) -> None:
    channel = new_channel(client)
    ts = client.chat_postMessage(channel=channel, text="root cause: disk full")["ts"]
    link = client.chat_getPermalink(channel=channel, message_ts=ts)["permalink"]
    assert link.startswith(slack.url)
    assert "root cause: disk full" in httpx.get(link).text
    assert (
        error_of(client.chat_getPermalink, channel=channel, message_ts="1700000000.000001")
        == "message_not_found"
    )


def test_direct_messages_by_user_id(slack: SlackSandbox, client: WebClient) -> None:
    alice = uid(slack, "alice")
    posted = client.chat_postMessage(
        channel=alice, text="your incident channel could not be created"
    )
    assert posted["channel"].startswith("D")
    opened = client.conversations_open(users=alice)["channel"]["id"]
    assert opened == posted["channel"]
    assert "DM with alice" in slack.transcript()


def test_concurrent_posts_get_unique_timestamps(slack: SlackSandbox) -> None:
    channel = new_channel(slack.web_client())
    errors: list[BaseException] = []

    def post(n: int) -> None:
        try:
            slack.web_client().chat_postMessage(channel=channel, text=f"m{n}")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    messages = slack.workspace.channels[channel].messages
    assert len(messages) == 16
    assert len({m.ts for m in messages}) == 16


# -- pins, reactions, bookmarks ------------------------------------------------------------


def test_pins(slack: SlackSandbox, client: WebClient) -> None:
    channel = new_channel(client)
    ts = client.chat_postMessage(channel=channel, text="header")["ts"]
    assert client.pins_add(channel=channel, timestamp=ts)["ok"] is True
    assert slack.snapshot(channel).pinned[0].text == "header"
    assert error_of(client.pins_add, channel=channel, timestamp=ts) == "already_pinned"
    bogus = "1700000000.000001"
    assert error_of(client.pins_add, channel=channel, timestamp=bogus) == "message_not_found"
    assert (
        error_of(lambda: client.api_call("pins.add", params={"channel": channel}))
        == "no_item_specified"
    )
    assert error_of(client.pins_add, channel="C0NOPE00000", timestamp=ts) == "channel_not_found"


def test_reactions(slack: SlackSandbox, client: WebClient) -> None:
    channel = new_channel(client)
    ts = client.chat_postMessage(channel=channel, text="on it")["ts"]
    client.reactions_add(channel=channel, timestamp=ts, name="eyes")
    assert slack.snapshot(channel).messages[0].reactions == {"eyes": ["Incident Bot"]}
    add = client.reactions_add
    assert error_of(add, channel=channel, timestamp=ts, name="eyes") == "already_reacted"
    assert error_of(add, channel=channel, timestamp=ts, name="not an emoji") == "invalid_name"
    assert (
        error_of(add, channel=channel, timestamp="1700000000.000001", name="x")
        == "message_not_found"
    )


def test_bookmarks(slack: SlackSandbox, client: WebClient) -> None:
    channel = new_channel(client)
    link = "https://runbooks.example/rpc-lag"
    made = client.bookmarks_add(channel_id=channel, title="Runbook", type="link", link=link)
    assert made["bookmark"]["link"] == link
    assert slack.snapshot(channel).bookmarks == [f"Runbook ({link})"]
    add = client.bookmarks_add
    assert error_of(add, channel_id=channel, title="x", type="folder") == "invalid_bookmark_type"
    general = cid(slack, "general")
    assert error_of(add, channel_id=general, title="x", type="link", link=link) == "not_in_channel"


# -- users and groups ------------------------------------------------------------------------


def test_user_lookups(slack: SlackSandbox, client: WebClient) -> None:
    bob = client.users_lookupByEmail(email="bob@nodeworks.example")["user"]
    assert bob["real_name"] == "Bob Okafor"
    assert client.users_info(user=bob["id"])["user"]["profile"]["display_name"] == "bob"
    assert error_of(client.users_info, user="U0NOBODY000") == "user_not_found"
    assert (
        error_of(client.users_lookupByEmail, email="nobody@nodeworks.example") == "users_not_found"
    )


def test_usergroup_members(slack: SlackSandbox, client: WebClient) -> None:
    group = slack.workspace.usergroups
    [oncall] = [g for g in group.values() if g.handle == "oncall-rpc"]
    users = client.usergroups_users_list(usergroup=oncall.id)["users"]
    assert users == [uid(slack, "bob"), uid(slack, "carol")]
    assert error_of(client.usergroups_users_list, usergroup="S0NOPE00000") == "no_such_subteam"


# -- modals ----------------------------------------------------------------------------------

MODAL = {
    "type": "modal",
    "callback_id": "declare",
    "title": {"type": "plain_text", "text": "Declare an incident"},
    "submit": {"type": "plain_text", "text": "Declare"},
    "blocks": [
        {
            "type": "input",
            "block_id": "title",
            "label": {"type": "plain_text", "text": "Title"},
            "element": {"type": "plain_text_input", "action_id": "title"},
        }
    ],
}


class FakeClock:
    def __init__(self, start: float = 1_760_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_views_open_push_update(slack: SlackSandbox, client: WebClient) -> None:
    alice = uid(slack, "alice")
    trigger = slack.workspace.issue_trigger(alice)
    view = client.views_open(trigger_id=trigger, view=MODAL)["view"]
    assert view["id"].startswith("V") and view["callback_id"] == "declare"
    assert error_of(client.views_open, trigger_id=trigger, view=MODAL) == "exchanged_trigger_id"
    assert error_of(client.views_open, trigger_id="123.456.abc", view=MODAL) == "invalid_trigger_id"
    changed = {**MODAL, "title": {"type": "plain_text", "text": "Declare (2)"}}
    updated = client.views_update(view_id=view["id"], view=changed, hash=view["hash"])["view"]
    assert updated["title"]["text"] == "Declare (2)"
    assert (
        error_of(client.views_update, view_id=view["id"], view=MODAL, hash=view["hash"])
        == "hash_conflict"
    )
    assert error_of(client.views_update, view_id="V0NOPE00000", view=MODAL) == "not_found"
    pushed = client.views_push(trigger_id=slack.workspace.issue_trigger(alice), view=MODAL)["view"]
    assert pushed["previous_view_id"] == view["id"] and pushed["root_view_id"] == view["id"]
    client.views_push(trigger_id=slack.workspace.issue_trigger(alice), view=MODAL)
    assert (
        error_of(client.views_push, trigger_id=slack.workspace.issue_trigger(alice), view=MODAL)
        == "push_limit_reached"
    )


def test_trigger_ids_expire_after_three_seconds(slack: SlackSandbox, client: WebClient) -> None:
    clock = FakeClock()
    slack.workspace.clock = clock
    trigger = slack.workspace.issue_trigger(uid(slack, "alice"))
    clock.now += 3.5
    assert error_of(client.views_open, trigger_id=trigger, view=MODAL) == "expired_trigger_id"
    fresh = slack.workspace.issue_trigger(uid(slack, "alice"))
    clock.now += 2.9
    assert client.views_open(trigger_id=fresh, view=MODAL)["ok"] is True


@pytest.mark.parametrize(
    "view",
    [
        {**MODAL, "title": {"type": "plain_text", "text": "x" * 25}},
        {**MODAL, "title": {"type": "mrkdwn", "text": "Declare"}},
        {k: v for k, v in MODAL.items() if k != "title"},
        {**MODAL, "type": "popup"},
        {**MODAL, "blocks": [{"type": "input", "label": {"type": "plain_text", "text": "x"}}]},
    ],
)
def test_invalid_views_are_refused(slack: SlackSandbox, client: WebClient, view: dict) -> None:
    trigger = slack.workspace.issue_trigger(uid(slack, "alice"))
    assert error_of(client.views_open, trigger_id=trigger, view=view) == "invalid_arguments"
