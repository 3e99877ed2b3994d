"""Socket Mode as the sandbox speaks it, seen from slack_sdk's own Socket Mode client.

The app in these tests is ``slack_sdk.socket_mode.SocketModeClient`` (the built-in client Bolt's
``SocketModeHandler`` runs on) with a listener that acknowledges envelopes as each test says:
at once, with a payload, late, or not at all. Where a test needs to do what that client never
does (reuse a URL, open an eleventh connection) it speaks WebSocket directly.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from incidentbot.sandbox.slack import SlackSandbox
from incidentbot.sandbox.slack.spec import check_request_log, load_spec

NO_ACK = object()  # an answer meaning "leave the envelope unacknowledged"
Answer = Callable[[SocketModeRequest], Any]


@dataclass
class FakeApp:
    """A Socket Mode app: slack_sdk's client plus a record of what it received."""

    client: SocketModeClient
    answer: Answer | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    envelopes: list[SocketModeRequest] = field(default_factory=list)

    def on_raw(self, text: str) -> None:
        self.messages.append(json.loads(text))

    def on_request(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        self.envelopes.append(req)
        reply = self.answer(req) if self.answer else None
        if reply is not NO_ACK:
            client.send_socket_mode_response(SocketModeResponse(req.envelope_id, payload=reply))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]


def close_fast(client: SocketModeClient) -> None:
    """Close a client without its one-second wait: its message loop blocks on a queue read
    with a 1 s timeout, so wake it with ``None`` (which it skips) once it is told to stop."""
    client.closed = True
    client.message_queue.put(None)
    client.close()


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


@pytest.fixture
def slack() -> Iterator[SlackSandbox]:
    # Frequent keepalive pings also wake slack_sdk's receive loop, so clients close promptly.
    with SlackSandbox(ws_ping_interval=0.1, ws_ping_timeout=2.0) as sandbox:
        yield sandbox


@pytest.fixture
def connect(slack: SlackSandbox) -> Iterator[Callable[..., FakeApp]]:
    """Start an app connected to ``slack``; every app is closed after the test."""
    started: list[SocketModeClient] = []

    def start(answer: Answer | None = None, *, wait: bool = True, **kwargs: Any) -> FakeApp:
        before = len(slack.socket_mode.connections())
        client = SocketModeClient(
            app_token=kwargs.pop("app_token", slack.app_token),
            web_client=WebClient(base_url=slack.base_url),
            **kwargs,
        )
        app = FakeApp(client, answer)
        client.on_message_listeners.append(app.on_raw)
        client.socket_mode_request_listeners.append(app.on_request)
        started.append(client)
        client.connect()
        if wait:
            assert slack.socket_mode.wait_for_connections(before + 1, timeout=10)
        return app

    yield start
    closers = [threading.Thread(target=close_fast, args=(c,)) for c in started]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join(timeout=10)


def api(slack: SlackSandbox, method: str, token: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(slack.base_url + method, headers=headers).json()


def test_apps_connections_open_takes_only_the_app_level_token(slack: SlackSandbox) -> None:
    opened = WebClient(base_url=slack.base_url).apps_connections_open(app_token=slack.app_token)
    assert opened["url"].startswith(f"ws://127.0.0.1:{slack.port}/link/?ticket=")
    assert f"app_id={slack.workspace.app_id}" in opened["url"]
    with pytest.raises(SlackApiError) as refused:
        WebClient(base_url=slack.base_url).apps_connections_open(app_token=slack.bot_token)
    assert refused.value.response["error"] == "not_allowed_token_type"
    assert api(slack, "apps.connections.open", "xapp-1-not-issued")["error"] == "invalid_auth"
    assert api(slack, "apps.connections.open", None)["error"] == "not_authed"
    # ... and the app-level token opens connections, nothing else.
    assert api(slack, "auth.test", slack.app_token)["error"] == "not_allowed_token_type"
    assert api(slack, "auth.test", slack.bot_token)["ok"] is True
    spec = load_spec()
    # The method's answers conform to Slack's page (the description predates the method).
    log = slack.requests("apps.connections.open")
    problems = [(p.method, p.kind, p.detail) for p in check_request_log(log, spec)]
    assert problems == [("apps.connections.open", "missing_required_argument", "token")]


def test_hello_on_connect_counts_the_apps_connections(
    slack: SlackSandbox, connect: Callable[..., FakeApp]
) -> None:
    first = connect()
    hello = wait_for(lambda: first.of_type("hello"), "hello")[0]
    assert hello == {
        "type": "hello",
        "num_connections": 1,
        "debug_info": {
            "host": "applink-sandbox",
            "build_number": 1,
            "approximate_connection_time": 18060,
        },
        "connection_info": {"app_id": slack.workspace.app_id},
    }
    second = connect()
    assert wait_for(lambda: second.of_type("hello"), "hello")[0]["num_connections"] == 2
    assert len(slack.socket_mode.connections()) == 2


def test_a_socket_url_is_single_use(slack: SlackSandbox) -> None:
    url = WebClient(base_url=slack.base_url).apps_connections_open(app_token=slack.app_token)["url"]
    with ws_connect(url) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"
    for stale in (url, url.split("?")[0], url.replace("ticket=", "ticket=x")):
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(stale).close()
        assert refused.value.response.status_code == 403


def test_slash_command_envelope_and_an_ack_with_a_payload(
    slack: SlackSandbox, connect: Callable[..., FakeApp]
) -> None:
    app = connect(lambda req: {"text": f"echo: {req.payload['text']}"})
    ack = slack.driver.slash_command("declare sev2 RPC lag", user="alice", channel="incidents")
    assert ack.ok and ack.transport == "socket" and ack.problem is None
    assert json.loads(ack.body) == {"text": "echo: declare sev2 RPC lag"}
    sent = app.of_type("slash_commands")[0]
    assert sent["envelope_id"] == ack.envelope_id
    assert sent["accepts_response_payload"] is True
    assert "retry_attempt" not in sent  # only Events API envelopes carry retries
    payload = sent["payload"]
    assert payload["command"] == "/incident" and payload["text"] == "declare sev2 RPC lag"
    assert payload["user_id"] == slack.workspace.user("alice").id
    assert payload["channel_id"] == slack.workspace.channel("incidents").id
    assert payload["response_url"].startswith(slack.url + "/commands/")
    assert payload["trigger_id"] and payload["api_app_id"] == slack.workspace.app_id
    # The ack's payload is what the user sees, as with an HTTP answer.
    assert [e.text for e in slack.ephemeral("alice")] == ["echo: declare sev2 RPC lag"]
    app.answer = lambda req: {"response_type": "in_channel", "text": "Declared"}
    slack.driver.slash_command("declare now", user="bob")
    assert slack.snapshot("incidents").texts()[-1] == "Declared"


BUTTONS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*INC-1* declared"}},
    {
        "type": "actions",
        "block_id": "controls",
        "elements": [
            {
                "type": "button",
                "action_id": "acknowledge",
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "value": "INC-1",
            }
        ],
    },
]
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


def test_interactive_envelopes_accept_a_payload_only_where_slack_uses_it(
    slack: SlackSandbox, connect: Callable[..., FakeApp]
) -> None:
    app = connect()
    web = slack.web_client()
    digest = slack.workspace.channel("incidents").id
    ts = web.chat_postMessage(channel=digest, text="INC-1", blocks=BUTTONS)["ts"]
    click = slack.driver.block_action("acknowledge", user="bob", channel="incidents", message_ts=ts)
    assert click.ok and click.body == ""
    sent = app.of_type("interactive")[-1]
    assert sent["accepts_response_payload"] is False
    assert sent["payload"]["type"] == "block_actions"
    assert sent["payload"]["actions"][0]["value"] == "INC-1"
    app.answer = lambda req: {"text": "ignored"}
    ignored = slack.driver.block_action("acknowledge", channel="incidents", message_ts=ts)
    assert ignored.ok and "Slack ignores it" in (ignored.problem or "")

    app.answer = None
    slack.driver.slash_command("declare")
    trigger = app.envelopes[-1].payload["trigger_id"]
    view_id = web.views_open(trigger_id=trigger, view=MODAL)["view"]["id"]
    app.answer = lambda req: {"response_action": "errors", "errors": {"title": "Too short"}}
    refused = slack.driver.view_submission(view_id, {"title": "x"})
    sent = app.of_type("interactive")[-1]
    assert sent["accepts_response_payload"] is True
    assert sent["payload"]["type"] == "view_submission"
    assert sent["payload"]["view"]["state"]["values"]["title"]["title"]["value"] == "x"
    assert refused.ok and refused.json()["response_action"] == "errors"
    view = slack.workspace.views[view_id]
    assert view.is_open and view.errors == {"title": "Too short"}
    app.answer = None
    assert slack.driver.view_submission(view_id, {"title": "RPC lag"}).ok
    assert view.is_open is False  # an empty ack closes the modal


def test_events_api_envelope(slack: SlackSandbox, connect: Callable[..., FakeApp]) -> None:
    app = connect()
    msg, acks = slack.driver.post_message("alice", "incidents", "rpc-2 is 40 blocks behind")
    assert [a.ok for a in acks] == [True]
    acks = slack.driver.add_reaction("bob", "incidents", msg.ts, "pushpin")
    sent = app.of_type("events_api")[-1]
    assert sent["envelope_id"] == acks[0].envelope_id
    assert sent["accepts_response_payload"] is False
    assert (sent["retry_attempt"], sent["retry_reason"]) == (0, "")
    body = sent["payload"]
    assert body["type"] == "event_callback" and body["event_id"].startswith("Ev")
    assert body["event"]["type"] == "reaction_added" and body["event"]["reaction"] == "pushpin"
    assert body["event"]["item"] == {
        "type": "message",
        "channel": slack.workspace.channel("incidents").id,
        "ts": msg.ts,
    }
    redelivered = slack.driver.redeliver(acks[0])
    again = app.of_type("events_api")[-1]
    assert redelivered.ok and again["envelope_id"] != sent["envelope_id"]
    assert again["payload"]["event_id"] == body["event_id"]
    assert (again["retry_attempt"], again["retry_reason"]) == (1, "timeout")


def test_an_unacknowledged_event_is_retried_and_a_late_ack_is_noticed(
    slack: SlackSandbox, connect: Callable[..., FakeApp]
) -> None:
    retried = threading.Event()

    def answer(req: SocketModeRequest) -> Any:
        if req.retry_attempt == 0:
            retried.wait(30)  # acknowledged, but only once the driver has given up on it
            return None
        if req.retry_attempt == 1:
            retried.set()
            return NO_ACK
        return None

    app = connect(answer)
    # Long enough for the ack that comes at once on the busiest machine; the attempts that
    # are never acknowledged cost it, which is what keeps it from being longer.
    slack.driver.ack_timeout = 2.0
    acks = slack.driver.join_channel("dave", "incidents")
    assert [(a.ok, a.timed_out, a.retry_num) for a in acks] == [
        (False, True, 0),
        (False, True, 1),
        (True, False, 2),
    ]
    sent = app.of_type("events_api")
    assert [(m["retry_attempt"], m["retry_reason"]) for m in sent] == [
        (0, ""),
        (1, "timeout"),
        (2, "timeout"),
    ]
    assert len({m["payload"]["event_id"] for m in sent}) == 1
    assert len({m["envelope_id"] for m in sent}) == 3
    late = wait_for(lambda: slack.socket_mode.stray, "the late ack")
    assert json.loads(late[0].text) == {"envelope_id": sent[0]["envelope_id"]}
    assert "late" in late[0].reason

    app.answer = lambda req: NO_ACK
    slack.driver.ack_timeout = 0.3  # nothing will come: no need to wait long
    ack = slack.driver.slash_command("help")
    assert ack.timed_out and not ack.ok  # a slash command is not retried: the user sees a failure
    assert len(app.of_type("slash_commands")) == 1


def test_refresh_requested_moves_the_app_to_a_new_connection(
    slack: SlackSandbox, connect: Callable[..., FakeApp]
) -> None:
    app = connect()
    first = slack.socket_mode.connections()[0]
    assert slack.socket_mode.disconnect("refresh_requested") == [first.id]
    wait_for(lambda: first.closed_at is not None, "the old connection to close")
    second = wait_for(slack.socket_mode.connections, "the new connection")[0]
    assert second.id != first.id
    disconnect = app.of_type("disconnect")
    assert disconnect == [
        {
            "type": "disconnect",
            "reason": "refresh_requested",
            "debug_info": {"host": "applink-sandbox"},
        }
    ]
    wait_for(lambda: len(app.of_type("hello")) == 2, "hello on the new connection")
    assert slack.driver.slash_command("help").ok
    assert (first.envelopes_sent, second.envelopes_sent, second.acks_received) == (0, 1, 1)
    assert [r.id for r in slack.socket_mode.history] == [first.id, second.id]


def test_a_dropped_connection_is_reopened(
    slack: SlackSandbox, connect: Callable[..., FakeApp]
) -> None:
    app = connect(ping_interval=0.5)  # its monitor notices a dead connection this often
    first = slack.socket_mode.connections()[0]
    slack.socket_mode.drop()
    wait_for(lambda: [c for c in slack.socket_mode.connections() if c.id != first.id], "reconnect")
    wait_for(lambda: len(app.of_type("hello")) == 2, "hello on the new connection")
    assert first.closed_at is not None and first.close_code == 1001
    assert slack.driver.slash_command("help").ok


def test_keepalive_pings_are_answered_both_ways(
    slack: SlackSandbox, connect: Callable[..., FakeApp]
) -> None:
    app = connect(ping_interval=0.2)
    session = app.client.current_session
    assert session is not None
    # The client pings; the server's pong carries the client's payload back.
    wait_for(lambda: session.last_ping_pong_time is not None, "a pong from the server")
    # The server pings every 0.1 s and closes a connection whose pongs stop (2 s). A dozen of
    # the client's own rounds (0.2 s apart, counted, however long they take) outlast that:
    # the first connection is still the only one.
    pongs: set[float | None] = set()

    def twelve_rounds() -> bool:
        pongs.add(session.last_ping_pong_time)
        return len(pongs) > 12

    wait_for(twelve_rounds, "a dozen ping rounds")
    [only] = slack.socket_mode.history
    assert only.closed_at is None and app.client.is_connected()


def test_an_eleventh_connection_is_turned_away() -> None:
    with SlackSandbox(max_socket_connections=1) as slack:
        web = WebClient(base_url=slack.base_url)
        with ws_connect(web.apps_connections_open(app_token=slack.app_token)["url"]) as first:
            assert json.loads(first.recv(timeout=5))["num_connections"] == 1
            url = web.apps_connections_open(app_token=slack.app_token)["url"]
            with ws_connect(url) as extra:
                message = json.loads(extra.recv(timeout=5))
                assert (message["type"], message["reason"]) == (
                    "disconnect",
                    "too_many_websockets",
                )
                with pytest.raises(ConnectionClosed):
                    extra.recv(timeout=5)
            assert len(slack.socket_mode.connections()) == 1


def test_driver_modes(slack: SlackSandbox, connect: Callable[..., FakeApp]) -> None:
    assert slack.driver.mode == "auto" and not slack.driver.uses_socket()
    with pytest.raises(RuntimeError, match="no bot URL"):
        slack.driver.slash_command("help")  # no app connected and no URL to POST to
    slack.driver.mode = "socket"
    slack.driver.ack_timeout = 0.2
    nobody = slack.driver.slash_command("help")
    assert not nobody.ok and nobody.error == "no Socket Mode connection is open"
    with pytest.raises(ValueError, match="unknown driver mode"):
        slack.driver.mode = "carrier-pigeon"
    slack.driver.mode = "auto"
    slack.driver.ack_timeout = 3.0
    connect()
    assert slack.driver.uses_socket() and slack.driver.slash_command("help").transport == "socket"
    with pytest.raises(ValueError, match="Socket Mode has none"):
        slack.driver.url_verification()
    slack.driver.mode = "http"
    with pytest.raises(RuntimeError, match="no bot URL"):
        slack.driver.slash_command("help")
    slack.reset()
    assert slack.driver.mode == "http" and slack.socket_mode.connected  # both survive a reset


def test_admin_endpoints(slack: SlackSandbox, connect: Callable[..., FakeApp]) -> None:
    app = connect(lambda req: {"text": "ok"} if req.type == "slash_commands" else None)
    state = httpx.get(slack.url + "/_sandbox/socket").json()
    assert state["mode"] == "auto" and state["connected"] is True
    assert len(state["connections"]) == 1
    command = httpx.post(slack.url + "/_sandbox/command", json={"text": "help"}).json()["ack"]
    assert command["transport"] == "socket" and command["body"] == '{"text": "ok"}'
    event = {"type": "member_joined_channel", "user": "U1", "channel": "C1"}
    acks = httpx.post(slack.url + "/_sandbox/event", json={"event": event}).json()["acks"]
    assert [a["transport"] for a in acks] == ["socket"] and acks[0]["status"] == 200
    first = state["connections"][0]["id"]
    answer = httpx.post(
        slack.url + "/_sandbox/socket/disconnect", json={"reason": "warning", "close_after": None}
    ).json()
    assert answer == {"ok": True, "connections": [first]}
    wait_for(lambda: app.of_type("disconnect"), "the disconnect message")
    # slack_sdk's client reconnects on any disconnect message, "warning" included.
    wait_for(lambda: len(app.of_type("hello")) == 2, "hello on the new connection")
    wait_for(lambda: slack.socket_mode.history[0].closed_at, "the app to leave the old one")
    refused = httpx.post(slack.url + "/_sandbox/socket", json={"mode": "smoke-signals"})
    assert refused.status_code == 400
    switched = httpx.post(slack.url + "/_sandbox/socket", json={"mode": "http"}).json()
    assert switched["mode"] == "http" and slack.driver.mode == "http"
