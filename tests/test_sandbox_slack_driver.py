"""Driving a bot as Slack does: signed requests, acks, response_url, interactions, events.

The receiving end is a tiny Starlette app that checks every signature with slack_sdk's own
``SignatureVerifier`` and answers however each test tells it to.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import uvicorn
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidentbot.sandbox.slack import SlackSandbox

SECRET = "test-signing-secret"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    valid: bool

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    @property
    def payload(self) -> dict[str, Any]:
        """The JSON of an interaction (``payload=``) or of an Events API callback."""
        if self.headers["content-type"].startswith("application/json"):
            return json.loads(self.body)
        return json.loads(self.form["payload"])


Reply = tuple[int, str, float]  # status, body, seconds to wait before answering


@dataclass
class FakeBot:
    """Records signed requests; ``replies`` answers them in order (then 200, empty)."""

    verifier: SignatureVerifier = field(default_factory=lambda: SignatureVerifier(SECRET))
    received: list[Received] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    on_request: Callable[[Received], Reply | None] | None = None

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        valid = self.verifier.is_valid_request(body, dict(request.headers))
        got = Received(dict(request.headers), body, valid)
        self.received.append(got)
        if not valid:
            return Response("invalid signature", status_code=401)
        reply = self.on_request(got) if self.on_request else None
        if reply is None:
            reply = self.replies.pop(0) if self.replies else (200, "", 0.0)
        status, text, delay = reply
        if delay:
            await asyncio.sleep(delay)
        media = "application/json" if text.startswith("{") else "text/plain"
        return Response(text, status_code=status, media_type=media)


@pytest.fixture(scope="module")
def bot_server() -> Iterator[tuple[FakeBot, str]]:
    bot = FakeBot()
    app = Starlette(routes=[Route("/slack/events", bot.endpoint, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield bot, f"http://127.0.0.1:{sock.getsockname()[1]}/slack/events"
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def server(bot_server: tuple[FakeBot, str]) -> Iterator[SlackSandbox]:
    with SlackSandbox(bot_url=bot_server[1], signing_secret=SECRET) as sandbox:
        yield sandbox


@pytest.fixture
def bot(bot_server: tuple[FakeBot, str]) -> FakeBot:
    fake = bot_server[0]
    fake.received.clear()
    fake.replies.clear()
    fake.on_request = None
    return fake


@pytest.fixture
def slack(server: SlackSandbox, bot: FakeBot) -> SlackSandbox:
    server.reset()
    return server


def reply_json(data: dict[str, Any]) -> Reply:
    return 200, json.dumps(data), 0.0


# -- signing and acks -------------------------------------------------------------------


def test_url_verification_handshake(slack: SlackSandbox, bot: FakeBot) -> None:
    bot.on_request = lambda got: reply_json({"challenge": got.payload["challenge"]})
    ack = slack.driver.url_verification("c-123")
    assert bot.received[0].valid
    assert ack.ok and ack.json() == {"challenge": "c-123"}


def test_slash_command_is_signed_and_complete(slack: SlackSandbox, bot: FakeBot) -> None:
    ack = slack.driver.slash_command("declare sev2 RPC lagging", user="alice", channel="incidents")
    [got] = bot.received
    assert got.valid
    assert got.headers["content-type"] == "application/x-www-form-urlencoded"
    form = got.form
    assert form["command"] == "/incident"
    assert form["text"] == "declare sev2 RPC lagging"
    assert form["user_id"] == slack.workspace.user("alice").id
    assert form["channel_id"] == slack.workspace.channel("incidents").id
    assert form["team_id"] == slack.workspace.team_id
    assert form["trigger_id"] and form["response_url"].startswith(slack.url + "/commands/")
    assert ack.ok and ack.kind == "slash_command" and ack.elapsed_s > 0
    assert slack.driver.acks == [ack]


def test_bad_signatures_and_stale_timestamps_are_rejected_by_the_verifier(
    slack: SlackSandbox, bot: FakeBot
) -> None:
    good = slack.driver.slash_command_request("help")
    forged = slack.driver.build(
        "slash_command", good.body, good.headers["Content-Type"], signing_secret="wrong"
    )
    stale = slack.driver.build(
        "slash_command", good.body, good.headers["Content-Type"], timestamp=int(time.time()) - 600
    )
    assert slack.driver.send(forged).status == 401
    assert slack.driver.send(stale).status == 401
    assert slack.driver.send(good).status == 200
    assert [r.valid for r in bot.received] == [False, False, True]


def test_immediate_answer_in_the_ack_is_shown(slack: SlackSandbox, bot: FakeBot) -> None:
    bot.replies = [reply_json({"text": "Usage: /incident declare <title>"}), (200, "plain", 0.0)]
    slack.driver.slash_command("bogus", user="bob")
    assert [e.text for e in slack.ephemeral("bob")] == ["Usage: /incident declare <title>"]
    slack.driver.slash_command("again", user="bob")
    assert slack.ephemeral("bob")[-1].text == "plain"
    bot.replies = [reply_json({"response_type": "in_channel", "text": "Incident declared"})]
    slack.driver.slash_command("declare x", user="bob")
    assert slack.snapshot("incidents").texts()[-1] == "Incident declared"


def test_slow_acks_are_recorded_as_timeouts(slack: SlackSandbox, bot: FakeBot) -> None:
    slack.driver.ack_timeout = 0.2
    bot.replies = [(200, "", 1.0)]
    ack = slack.driver.slash_command("declare slow")
    slack.driver.ack_timeout = 3.0
    assert ack.timed_out and ack.status is None and not ack.ok


def test_concurrent_slash_commands_with_the_async_client(slack: SlackSandbox, bot: FakeBot) -> None:
    requests = [slack.driver.slash_command_request(f"declare n{n}") for n in range(10)]

    async def fire() -> list[Any]:
        async with httpx.AsyncClient() as client:
            return await asyncio.gather(*(slack.driver.send_async(r, client) for r in requests))

    acks = asyncio.run(fire())
    assert all(a.ok for a in acks)
    assert sorted(r.form["text"] for r in bot.received) == sorted(
        f"declare n{n}" for n in range(10)
    )


def test_admin_endpoint_drives_a_command(slack: SlackSandbox, bot: FakeBot) -> None:
    answer = httpx.post(
        slack.url + "/_sandbox/command", json={"text": "list", "user": "carol"}
    ).json()
    assert answer["ack"]["status"] == 200
    assert bot.received[0].form["user_name"] == "carol"


# -- response_url ----------------------------------------------------------------------------


def test_response_url_ephemeral_in_channel_replace_delete(
    slack: SlackSandbox, bot: FakeBot
) -> None:
    slack.driver.slash_command("status", user="alice")
    url = bot.received[0].form["response_url"]
    assert httpx.post(url, json={"text": "working on it"}).json() == {"ok": True}
    assert [e.text for e in slack.ephemeral("alice")] == ["working on it"]
    httpx.post(url, json={"text": "done", "replace_original": True})
    assert [e.text for e in slack.ephemeral("alice")] == ["done"]
    httpx.post(url, json={"delete_original": True})
    assert slack.ephemeral("alice") == []
    httpx.post(url, json={"text": "SEV2 declared", "response_type": "in_channel"})
    [shown] = slack.snapshot("incidents").messages
    assert (shown.author, shown.text) == ("Incident Bot", "SEV2 declared")
    assert [p.status for p in slack.response_posts(url)] == [200, 200, 200, 200]


def test_response_url_allows_five_posts(slack: SlackSandbox, bot: FakeBot) -> None:
    slack.driver.slash_command("status")
    url = bot.received[0].form["response_url"]
    statuses = [httpx.post(url, json={"text": f"n{n}"}).status_code for n in range(6)]
    assert statuses == [200] * 5 + [404]
    assert slack.response_posts(url)[-1].error == "used_url"
    assert len(slack.ephemeral("alice")) == 5


def test_response_url_rejects_bad_bodies_and_expires(slack: SlackSandbox, bot: FakeBot) -> None:
    now = [time.time()]
    slack.workspace.clock = lambda: now[0]
    slack.driver.slash_command("status")
    url = bot.received[0].form["response_url"]
    assert httpx.post(url, json={}).json()["error"] == "no_text"
    bad_blocks = {"blocks": [{"type": "nope"}]}
    assert httpx.post(url, json=bad_blocks).json()["error"] == "invalid_blocks"
    assert httpx.post(url, content=b"not json").status_code == 400
    now[0] += 31 * 60
    expired = httpx.post(url, json={"text": "late"})
    assert (expired.status_code, expired.json()["error"]) == (404, "expired_url")
    assert httpx.post(slack.url + "/commands/T1/1/nope", json={"text": "x"}).status_code == 404


# -- interactions ----------------------------------------------------------------------------

BUTTON_BLOCKS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "SEV2: RPC lagging"}},
    {
        "type": "actions",
        "block_id": "controls",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "action_id": "ack",
                "value": "inc-7",
            }
        ],
    },
]


def test_block_action_from_a_message_and_replace_original(
    slack: SlackSandbox, bot: FakeBot
) -> None:
    client = slack.web_client()
    digest = slack.workspace.channel("incidents").id
    ts = client.chat_postMessage(channel=digest, text="SEV2", blocks=BUTTON_BLOCKS)["ts"]
    ack = slack.driver.block_action("ack", user="bob", channel="incidents", message_ts=ts)
    assert ack.ok
    payload = bot.received[0].payload
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == slack.workspace.user("bob").id
    [action] = payload["actions"]
    assert (action["action_id"], action["block_id"], action["value"]) == (
        "ack",
        "controls",
        "inc-7",
    )
    assert payload["container"] == {
        "type": "message",
        "message_ts": ts,
        "channel_id": digest,
        "is_ephemeral": False,
    }
    assert payload["message"]["blocks"][1]["block_id"] == "controls"
    httpx.post(
        payload["response_url"], json={"text": "Acknowledged by bob", "replace_original": True}
    )
    assert slack.snapshot("incidents").texts() == ["Acknowledged by bob"]
    with pytest.raises(LookupError):
        slack.driver.block_action("nope", channel="incidents", message_ts=ts)


def test_block_action_on_an_ephemeral_message(slack: SlackSandbox, bot: FakeBot) -> None:
    client = slack.web_client()
    channel = slack.workspace.channel("incidents").id
    bob = slack.workspace.user("bob").id
    ts = client.chat_postEphemeral(channel=channel, user=bob, text="Run it?", blocks=BUTTON_BLOCKS)[
        "message_ts"
    ]
    with pytest.raises(LookupError):  # only bob sees it
        slack.driver.block_action("ack", user="carol", channel="incidents", message_ts=ts)
    assert slack.driver.block_action("ack", user="bob", channel="incidents", message_ts=ts).ok
    payload = bot.received[-1].payload
    assert payload["container"] == {
        "type": "message",
        "message_ts": ts,
        "channel_id": channel,
        "is_ephemeral": True,
    }
    assert "message" not in payload and payload["actions"][0]["value"] == "inc-7"
    httpx.post(payload["response_url"], json={"text": "Started", "replace_original": True})
    assert [e.text for e in slack.ephemeral("bob")][-1] == "Started"
    httpx.post(payload["response_url"], json={"delete_original": True})
    with pytest.raises(LookupError):  # gone from bob's view
        slack.driver.block_action("ack", user="bob", channel="incidents", message_ts=ts)


SEVERITIES = [
    {"text": {"type": "plain_text", "text": f"SEV{n}"}, "value": f"sev{n}"} for n in range(1, 5)
]
DECLARE_MODAL = {
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
        },
        {
            "type": "input",
            "block_id": "severity",
            "label": {"type": "plain_text", "text": "Severity"},
            "element": {"type": "static_select", "action_id": "severity", "options": SEVERITIES},
        },
        {
            "type": "input",
            "block_id": "commander",
            "optional": True,
            "label": {"type": "plain_text", "text": "Commander"},
            "element": {"type": "users_select", "action_id": "commander"},
        },
    ],
}


def open_modal(slack: SlackSandbox, bot: FakeBot) -> str:
    """A slash command whose trigger_id the 'bot' exchanges for the declare modal."""
    slack.driver.slash_command("declare")
    trigger = bot.received[-1].form["trigger_id"]
    return slack.web_client().views_open(trigger_id=trigger, view=DECLARE_MODAL)["view"]["id"]


def test_view_submission_carries_typed_state(slack: SlackSandbox, bot: FakeBot) -> None:
    view_id = open_modal(slack, bot)
    alice = slack.workspace.user("alice").id
    ack = slack.driver.view_submission(
        view_id, {"title": "RPC lagging", "severity": "sev2", "commander": alice}
    )
    assert ack.ok and ack.problem is None
    payload = bot.received[-1].payload
    assert payload["type"] == "view_submission"
    values = payload["view"]["state"]["values"]
    assert values["title"]["title"] == {"type": "plain_text_input", "value": "RPC lagging"}
    assert values["severity"]["severity"]["selected_option"]["value"] == "sev2"
    assert values["commander"]["commander"]["selected_user"] == alice
    assert payload["view"]["callback_id"] == "declare"
    assert slack.workspace.views[view_id].is_open is False  # an empty ack closes the modal


ACCESSORY_MODAL = {
    "type": "modal",
    "callback_id": "pick",
    "title": {"type": "plain_text", "text": "Pick"},
    "submit": {"type": "plain_text", "text": "Go"},
    "blocks": [
        {
            "type": "section",
            "block_id": "sev",
            "text": {"type": "mrkdwn", "text": "Severity"},
            "accessory": {"type": "static_select", "action_id": "sev", "options": SEVERITIES},
        },
        {
            "type": "section",
            "block_id": "who",
            "text": {"type": "mrkdwn", "text": "Commander"},
            "accessory": {
                "type": "static_select",
                "action_id": "lead",
                "options": SEVERITIES,
                "initial_option": SEVERITIES[3],
            },
        },
        {
            "type": "section",
            "block_id": "doc",
            "text": {"type": "mrkdwn", "text": "Runbook"},
            "accessory": {
                "type": "button",
                "action_id": "open",
                "text": {"type": "plain_text", "text": "Open"},
            },
        },
        {
            "type": "input",
            "block_id": "title",
            "label": {"type": "plain_text", "text": "Title"},
            "element": {"type": "plain_text_input", "action_id": "title"},
        },
        {
            "type": "input",
            "block_id": "note",
            "label": {"type": "plain_text", "text": "Note"},
            "element": {
                "type": "plain_text_input",
                "action_id": "note",
                "initial_value": "as the form showed it",
            },
        },
    ],
}


def test_view_submission_carries_accessory_and_initial_values(
    slack: SlackSandbox, bot: FakeBot
) -> None:
    slack.driver.slash_command("declare")
    trigger = bot.received[-1].form["trigger_id"]
    view_id = slack.web_client().views_open(trigger_id=trigger, view=ACCESSORY_MODAL)["view"]["id"]
    with pytest.raises(LookupError, match="no option"):
        slack.driver.view_submission(view_id, {"sev": "sev9", "title": "x"})
    assert slack.driver.view_submission(view_id, {"sev": "sev2", "title": "RPC lagging"}).ok
    values = bot.received[-1].payload["view"]["state"]["values"]
    assert values["sev"]["sev"]["selected_option"]["value"] == "sev2"
    assert values["who"]["lead"]["selected_option"]["value"] == "sev4"  # its initial option
    assert "doc" not in values  # a button keeps no state
    assert values["title"]["title"]["value"] == "RPC lagging"
    # An untouched input is submitted with its initial value, as Slack's client submits it.
    assert values["note"]["note"]["value"] == "as the form showed it"


def test_view_submission_errors_update_push_clear(slack: SlackSandbox, bot: FakeBot) -> None:
    view_id = open_modal(slack, bot)
    view = slack.workspace.views[view_id]
    bot.replies = [reply_json({"response_action": "errors", "errors": {"title": "Too short"}})]
    slack.driver.view_submission(view_id, {"title": "x", "severity": "sev3"})
    assert view.is_open and view.errors == {"title": "Too short"}
    updated = {**DECLARE_MODAL, "title": {"type": "plain_text", "text": "Confirm"}}
    bot.replies = [reply_json({"response_action": "update", "view": updated})]
    slack.driver.view_submission(view_id, {"title": "longer", "severity": "sev3"})
    assert view.data["title"]["text"] == "Confirm" and view.errors == {}
    bot.replies = [reply_json({"response_action": "push", "view": DECLARE_MODAL})]
    slack.driver.view_submission(view_id, {"title": "longer", "severity": "sev3"})
    stack = [v for v in slack.workspace.views.values() if v.is_open]
    assert len(stack) == 2 and stack[1].previous_view_id == view_id
    bad = {**DECLARE_MODAL, "title": {"type": "plain_text", "text": "x" * 30}}
    bot.replies = [reply_json({"response_action": "update", "view": bad})]
    assert "invalid view" in (
        slack.driver.view_submission(view_id, {"title": "a", "severity": "sev1"}).problem or ""
    )
    bot.replies = [reply_json({"response_action": "clear"})]
    slack.driver.view_submission(view_id, {"title": "longer", "severity": "sev3"})
    assert not any(v.is_open for v in slack.workspace.views.values())


def test_view_submission_needs_required_inputs(slack: SlackSandbox, bot: FakeBot) -> None:
    view_id = open_modal(slack, bot)
    sent = len(bot.received)
    with pytest.raises(ValueError, match="Severity"):
        slack.driver.view_submission(view_id, {"title": "RPC lagging"})
    with pytest.raises(ValueError, match="no input named"):
        slack.driver.view_submission(view_id, {"title": "x", "severity": "sev1", "oops": 1})
    with pytest.raises(LookupError, match="no option"):
        slack.driver.view_submission(view_id, {"title": "x", "severity": "sev9"})
    assert len(bot.received) == sent


# -- Events API ------------------------------------------------------------------------------


def test_people_actions_deliver_events(slack: SlackSandbox, bot: FakeBot) -> None:
    msg, [ack] = slack.driver.post_message("alice", "incidents", "node-3 is back")
    assert ack.ok
    event = bot.received[-1].payload
    assert event["type"] == "event_callback"
    assert event["event"]["type"] == "message" and event["event"]["ts"] == msg.ts
    assert event["event"]["channel_type"] == "channel"
    slack.driver.add_reaction("bob", "incidents", msg.ts, "pushpin")
    reaction = bot.received[-1].payload["event"]
    assert reaction["type"] == "reaction_added" and reaction["reaction"] == "pushpin"
    assert reaction["item"] == {"type": "message", "channel": msg_channel(slack), "ts": msg.ts}
    assert reaction["item_user"] == slack.workspace.user("alice").id
    assert slack.snapshot("incidents").messages[0].reactions == {"pushpin": ["bob"]}
    slack.driver.join_channel("erin", "general", inviter="alice")
    joined = bot.received[-1].payload["event"]
    assert joined["type"] == "member_joined_channel" and joined["channel_type"] == "C"
    assert all(r.valid for r in bot.received)
    slack.workspace.add_user("zed", "Zed Outsider", "zed", email=None)
    with pytest.raises(ValueError, match="not in"):
        slack.driver.post_message("zed", "incidents", "let me in")


def msg_channel(slack: SlackSandbox) -> str:
    return slack.workspace.channel("incidents").id


def test_events_are_retried_until_acknowledged(slack: SlackSandbox, bot: FakeBot) -> None:
    bot.replies = [(500, "", 0.0), (503, "", 0.0)]
    acks = slack.driver.send_event({"type": "app_mention", "text": "hi", "user": "U1"})
    assert [a.status for a in acks] == [500, 503, 200]
    assert [a.retry_num for a in acks] == [0, 1, 2]
    headers = [r.headers for r in bot.received]
    assert "x-slack-retry-num" not in headers[0]
    assert [(h["x-slack-retry-num"], h["x-slack-retry-reason"]) for h in headers[1:]] == [
        ("1", "http_error"),
        ("2", "http_error"),
    ]
    assert len({r.payload["event_id"] for r in bot.received}) == 1


def test_slow_event_is_retried_with_http_timeout(slack: SlackSandbox, bot: FakeBot) -> None:
    slack.driver.ack_timeout = 0.2
    bot.replies = [(200, "", 1.0)]
    acks = slack.driver.send_event({"type": "app_mention", "text": "hi", "user": "U1"})
    slack.driver.ack_timeout = 3.0
    assert [a.timed_out for a in acks] == [True, False]
    assert bot.received[-1].headers["x-slack-retry-reason"] == "http_timeout"


def test_event_delivery_gives_up_after_three_retries(slack: SlackSandbox, bot: FakeBot) -> None:
    bot.on_request = lambda got: (500, "", 0.0)
    acks = slack.driver.send_event({"type": "app_mention", "text": "hi", "user": "U1"})
    assert [a.retry_num for a in acks] == [0, 1, 2, 3]
    assert not any(a.ok for a in acks)


def test_redeliver_repeats_an_acknowledged_event(slack: SlackSandbox, bot: FakeBot) -> None:
    [first] = slack.driver.send_event({"type": "app_mention", "text": "hi", "user": "U1"})
    again = slack.driver.redeliver(first)
    assert again.retry_num == 1
    ids = [r.payload["event_id"] for r in bot.received]
    assert ids[0] == ids[1]
    with pytest.raises(ValueError, match="only retries"):
        slack.driver.redeliver(slack.driver.slash_command("help"))
