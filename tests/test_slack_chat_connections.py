"""The bot's Slack calls travel over kept-alive connections, and behave as they did before.

Everything runs against the local Slack server over real sockets, reached through a TCP proxy
that counts the connections the bot opens and stands in for a front end that closes idle
connections or loses an answer.
"""

from __future__ import annotations

import inspect
import json
import logging
import socket
import struct
from collections.abc import Iterator

import pytest
from slack_sdk.web.base_client import BaseClient
from slack_sdk.webhook import WebhookClient
from sqlalchemy.engine import Engine

from incidentbot.bot import Bot
from incidentbot.config import Settings
from incidentbot.ports import ExternalError
from incidentbot.sandbox.slack import SlackSandbox
from incidentbot.slack.chat import SlackChat
from incidentbot.slack.connections import SlackConnections, _Tracked
from incidentbot.slack.web_client import PooledRespond
from tests import slack_sandbox_fixtures
from tests.slack_harness import PATIENT_ACK_S, wait_for
from tests.tcp_proxy import TcpProxy

server, slack = slack_sandbox_fixtures.server, slack_sandbox_fixtures.slack  # fixtures


@pytest.fixture
def proxy(slack: SlackSandbox) -> Iterator[TcpProxy]:
    with TcpProxy(slack.port) as p:
        yield p


@pytest.fixture
def chat(slack: SlackSandbox, proxy: TcpProxy) -> Iterator[SlackChat]:
    chat = SlackChat(slack.bot_token, base_url=proxy.base_url)
    yield chat
    chat.connections.close()


def texts(slack: SlackSandbox, channel: str) -> list[str]:
    return [m.text for m in slack.snapshot(channel).messages]


def test_a_declares_calls_share_one_connection(
    slack: SlackSandbox, proxy: TcpProxy, chat: SlackChat
) -> None:
    channel = chat.create_channel("inc-1-rpc-down")
    chat.set_topic(channel.id, "INC-1 · SEV2")
    chat.set_purpose(channel.id, "[INC-1] RPC down")
    chat.invite(channel.id, [slack.workspace.user("alice").id])
    ts = chat.post(channel.id, "INC-1 header", [])
    chat.pin(channel.id, ts)
    digest = chat.find_channel("incidents")
    assert digest is not None
    chat.post(digest.id, "INC-1 declared", [])

    assert len(slack.requests()) >= 8
    assert proxy.accepted == 1
    assert chat.connections.opened == 1
    snap = slack.snapshot("inc-1-rpc-down")
    assert [m.ts for m in snap.pinned] == [ts]
    assert "alice" in snap.members
    assert "INC-1 declared" in texts(slack, "incidents")


def test_a_connection_closed_while_idle_does_not_fail_the_next_call(
    slack: SlackSandbox, proxy: TcpProxy, chat: SlackChat
) -> None:
    channel = chat.create_channel("inc-2-disk-full").id
    chat.post(channel, "first", [])
    proxy.drop_all()  # the front end closed the idle connection

    chat.post(channel, "second", [])

    assert texts(slack, "inc-2-disk-full") == ["first", "second"]
    assert len(slack.requests("chat.postMessage")) == 2  # the second sent once
    assert proxy.accepted == 2


def test_a_message_whose_answer_was_lost_is_not_posted_again(
    slack: SlackSandbox, proxy: TcpProxy, chat: SlackChat
) -> None:
    channel = chat.create_channel("inc-3-reorg").id
    proxy.lose_answers = True

    with pytest.raises(ExternalError) as info:
        chat.post(channel, "may have gone out", [])

    assert proxy.answer_lost.is_set()
    assert (info.value.code, info.value.retryable) == ("network_error", True)
    # Slack posted it; the client did not send it again (the ledger looks before retrying).
    assert texts(slack, "inc-3-reorg") == ["may have gone out"]
    assert proxy.accepted == 1
    proxy.lose_answers = False
    chat.post(channel, "next", [])
    assert texts(slack, "inc-3-reorg") == ["may have gone out", "next"]


def test_a_refused_connection_is_tried_once_more_then_reported(
    slack: SlackSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        chat = SlackChat(slack.bot_token, base_url=f"http://127.0.0.1:{port}/api/")
        with caplog.at_level(logging.DEBUG), pytest.raises(ExternalError) as info:
            chat.post("C1", "hello", [])

    assert (info.value.code, info.value.retryable) == ("network_error", True)
    assert chat.connections.opened == 2  # nothing was sent: one more try, no more
    assert slack.bot_token not in caplog.text


@pytest.mark.parametrize(
    ("kind", "code", "retryable", "retry_after"),
    [
        ("ratelimited", "ratelimited", True, 7.0),
        ("server_error", "fatal_error", True, None),
    ],
)
def test_slack_errors_map_as_before(
    slack: SlackSandbox,
    chat: SlackChat,
    kind: str,
    code: str,
    retryable: bool,
    retry_after: float | None,
) -> None:
    channel = chat.create_channel("inc-4-errors").id
    slack.fail_next("chat.postMessage", kind, retry_after=7)  # type: ignore[arg-type]
    with pytest.raises(ExternalError) as info:
        chat.post(channel, "held back", [])
    assert (info.value.code, info.value.retryable, info.value.retry_after) == (
        code,
        retryable,
        retry_after,
    )
    assert texts(slack, "inc-4-errors") == []
    chat.post(channel, "then through", [])  # the same connection, still in step
    assert texts(slack, "inc-4-errors") == ["then through"]


def test_a_refusal_is_not_retryable(chat: SlackChat) -> None:
    with pytest.raises(ExternalError) as info:
        chat.post("C_NOT_A_CHANNEL", "hello", [])
    assert (info.value.code, info.value.retryable) == ("channel_not_found", False)


def test_a_timed_out_call_does_not_leave_its_answer_for_the_next(
    slack: SlackSandbox, proxy: TcpProxy
) -> None:
    chat = SlackChat(slack.bot_token, base_url=proxy.base_url, timeout=1)
    channel = chat.create_channel("inc-5-slow").id
    slack.fail_next("chat.postMessage", "timeout", hold_s=30.0)
    with pytest.raises(ExternalError) as info:
        chat.post(channel, "slow", [])
    assert (info.value.code, info.value.retryable) == ("network_error", True)

    ts = chat.post(channel, "fast", [])

    assert [m.text for m in slack.snapshot("inc-5-slow").messages if m.ts == ts] == ["fast"]
    chat.connections.close()


def test_the_sdk_sends_through_the_method_the_pooled_client_replaces() -> None:
    """The seam is a private method of slack_sdk's client (checked with 3.47): an upgrade that
    moves it fails here, not in production (where calls would silently go back to urllib)."""
    seam = BaseClient._perform_urllib_http_request_internal
    assert list(inspect.signature(seam).parameters) == ["self", "url", "req"]
    caller = inspect.getsource(BaseClient._perform_urllib_http_request)
    assert "self._perform_urllib_http_request_internal(url, req)" in caller
    webhook = WebhookClient._perform_http_request_internal  # respond()'s
    assert list(inspect.signature(webhook).parameters) == ["self", "url", "req"]
    assert "self._perform_http_request_internal(url, req)" in inspect.getsource(
        WebhookClient._perform_http_request
    )


def test_follow_ups_through_response_urls_share_one_connection(
    slack: SlackSandbox, proxy: TcpProxy
) -> None:
    slack.response_urls.base_url = f"http://{proxy.host}:{proxy.port}"
    alice = slack.workspace.user("alice").id
    channel = slack.workspace.channel_by_name("incidents")
    assert channel is not None
    urls = [slack.response_urls.create("commands", alice, channel.id) for _ in range(3)]
    connections = SlackConnections()

    for n, url in enumerate(urls):
        answer = PooledRespond(response_url=url, connections=connections)(
            text=f"follow-up {n}", response_type="ephemeral"
        )
        assert answer.status_code == 200

    assert [[p.body["text"] for p in slack.response_urls.get(u).posts] for u in urls] == [
        ["follow-up 0"],
        ["follow-up 1"],
        ["follow-up 2"],
    ]
    assert proxy.accepted == 1
    gone = PooledRespond(response_url=urls[0][:-4] + "nope", connections=connections)("late")
    assert (gone.status_code, json.loads(gone.body)) == (404, {"ok": False, "error": "no_service"})
    connections.close()


def test_a_request_to_a_reset_connection_is_known_to_have_sent_nothing() -> None:
    """What allows the one resend: a connection found reset at the first write sent nothing,
    while a write accepted by the operating system may have reached the server."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        reset = _Tracked("127.0.0.1", port, timeout=5)
        reset.connect()
        peer, _ = listener.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # reset, not closed in order
        reset.request("POST", "/api/chat.postMessage", body=b"text=hi")
        with pytest.raises(ConnectionError):
            reset.getresponse()
        assert reset.wrote is False
        reset.close()

        closed = _Tracked("127.0.0.1", port, timeout=5)
        closed.connect()
        peer, _ = listener.accept()
        peer.close()  # closed in order: the request is still accepted, and counts
        closed.request("POST", "/api/chat.postMessage", body=b"text=hi")
        with pytest.raises(ConnectionError):  # the request went out: only then did it fail
            closed.getresponse()
        assert closed.wrote is True
        closed.close()


FORMS = 8


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # no database question
def test_bolts_calls_share_the_bots_connections(engine: Engine) -> None:
    """The forms and ephemeral messages Bolt's listeners send go over the bot's pool, not a
    connection each."""
    with SlackSandbox(ack_timeout=PATIENT_ACK_S) as sandbox, TcpProxy(sandbox.port) as proxy:
        settings = Settings(
            slack_bot_token=sandbox.bot_token,
            slack_signing_secret=sandbox.signing_secret,
            slack={"api_url": proxy.base_url},
            workers=2,
        )
        bot = Bot.build(settings, engine, poll=0.1)
        try:
            sandbox.driver.bot_url = bot.start_http() + "/slack/events"
            before = proxy.accepted
            for opened in range(1, FORMS + 1):
                ack = sandbox.driver.slash_command("declare", user="carol", channel="incidents")
                assert ack.status == 200
                wait_for(lambda n=opened: len(sandbox.requests("views.open")) == n, what="form")
            assert len([v for v in sandbox.workspace.views.values() if v.is_open]) == FORMS
            # A connection per call would be one per form at least; the bot's other calls
            # (people looked up after each answer) may overlap a form's and need a second.
            assert proxy.accepted - before <= 3
        finally:
            bot.stop()
