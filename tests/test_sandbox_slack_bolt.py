"""A real Bolt app, configured only with the sandbox's base URL, works against the sandbox.

This is the compatibility proof for the bot's stack: Bolt verifies the sandbox's signatures,
parses its payloads, answers the URL handshake, and its slack_sdk calls all conform to the
vendor's description.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from slack_bolt import App
from slack_bolt.adapter.starlette import SlackRequestHandler
from slack_sdk import WebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidentbot.sandbox.slack import SlackSandbox
from incidentbot.sandbox.slack.spec import check_request_log

SECRET = "bolt-signing-secret"
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


def eventually(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Bolt runs listeners after the ack, on its own threads: wait for their effect."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def build_bolt(slack: SlackSandbox, seen: list[dict[str, Any]]) -> App:
    client = WebClient(base_url=slack.base_url, token=slack.bot_token)
    app = App(token=slack.bot_token, signing_secret=SECRET, client=client)

    @app.command("/incident")
    def command(ack: Any, body: dict, client: WebClient, respond: Any) -> None:
        ack()
        if body["text"].startswith("declare"):
            client.views_open(trigger_id=body["trigger_id"], view=MODAL)
        else:
            respond(f"Unknown subcommand `{body['text']}`. Try `/incident declare`.")

    @app.view("declare")
    def declare(ack: Any, view: dict, body: dict, client: WebClient) -> None:
        title = view["state"]["values"]["title"]["title"]["value"]
        if len(title) < 4:
            ack(response_action="errors", errors={"title": "A title needs 4+ characters"})
            return
        ack()
        channel = client.conversations_create(name="inc-1-" + title.lower().replace(" ", "-"))
        cid = channel["channel"]["id"]
        client.conversations_invite(channel=cid, users=body["user"]["id"])
        client.chat_postMessage(
            channel=cid,
            text=title,
            blocks=[
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}},
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "ack",
                            "text": {"type": "plain_text", "text": "Acknowledge"},
                        }
                    ],
                },
            ],
        )

    @app.action("ack")
    def acknowledge(ack: Any, body: dict, respond: Any) -> None:
        ack()
        respond(replace_original=True, text=f"Acknowledged by <@{body['user']['id']}>")

    @app.event("reaction_added")
    def reaction(event: dict) -> None:
        seen.append(event)

    return app


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[SlackSandbox, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with SlackSandbox(signing_secret=SECRET) as slack:
        handler = SlackRequestHandler(build_bolt(slack, seen))

        async def events(request: Request) -> Response:
            return await handler.handle(request)

        app = Starlette(routes=[Route("/slack/events", events, methods=["POST"])])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(
            uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        slack.driver.bot_url = f"http://127.0.0.1:{sock.getsockname()[1]}/slack/events"
        try:
            yield slack, seen
        finally:
            server.should_exit = True
            thread.join(timeout=5)


def test_bolt_app_runs_a_declare_against_the_sandbox(
    stack: tuple[SlackSandbox, list[dict[str, Any]]],
) -> None:
    slack, seen = stack
    assert slack.driver.url_verification("abc").json() == {"challenge": "abc"}

    assert slack.driver.slash_command("frobnicate", user="bob").ok
    eventually(lambda: slack.ephemeral("bob"), "the usage message")
    assert "Unknown subcommand" in slack.ephemeral("bob")[0].text

    assert slack.driver.slash_command("declare", user="alice").ok
    view = eventually(
        lambda: next((v for v in slack.workspace.views.values() if v.is_open), None), "the modal"
    )
    refused = slack.driver.view_submission(view.id, {"title": "x"})
    assert refused.json()["response_action"] == "errors"
    assert view.is_open and view.errors == {"title": "A title needs 4+ characters"}
    assert slack.driver.view_submission(view.id, {"title": "RPC lag"}).ok
    assert not view.is_open
    channel = eventually(lambda: slack.workspace.channel_by_name("inc-1-rpc-lag"), "the channel")
    message = eventually(lambda: channel.messages and channel.messages[0], "the header message")
    assert "alice" in slack.snapshot(channel.id).members

    assert slack.driver.block_action(
        "ack", user="carol", channel=channel.id, message_ts=message.ts
    ).ok
    eventually(lambda: "Acknowledged" in message.text, "the replaced message")
    assert slack.snapshot(channel.id).texts() == ["Acknowledged by @carol"]

    slack.driver.add_reaction("bob", channel.id, message.ts, "pushpin")
    eventually(lambda: seen, "the reaction event")
    assert seen[0]["reaction"] == "pushpin" and seen[0]["item"]["ts"] == message.ts

    problems = check_request_log(slack.requests())
    assert problems == [], "\n".join(map(str, problems))
