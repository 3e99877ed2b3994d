"""/incident end to end over Socket Mode: the real bot, started as ``incidentbot serve`` starts it.

The bot gets an app-level token and ``slack.mode: socket``; it opens its WebSocket through
``apps.connections.open`` on the local Slack server and nothing reaches it over HTTP (the
driver has no bot URL and is held to Socket Mode). The same flows as the HTTP end-to-end
tests then run through envelopes and acks, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.bot import Bot
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.inbound import InboundRequest
from incidentbot.incidents import service as svc
from incidentbot.sandbox.slack.driver import Ack
from incidentbot.sandbox.slack.server import SlackSandbox
from incidentbot.sandbox.slack.spec import check_request_log, load_spec
from tests.conftest import count
from tests.slack_harness import (
    PATIENT_ACK_S,
    channel_of,
    held_until_answered,
    incident,
    wait_for,
)

TITLE = "Validators missing attestations on holesky"
CHANNEL = "inc-1-validators-missing-attestations-on-holesky"


def socket_settings(sandbox: SlackSandbox, app_token: str) -> Settings:
    return Settings(
        slack_bot_token=sandbox.bot_token,
        slack_app_token=app_token,
        slack={"api_url": sandbox.base_url, "mode": "socket"},
        workers=4,
    )


@contextmanager
def socket_bot(engine: Engine) -> Iterator[tuple[Bot, SlackSandbox]]:
    # Keepalive pings every 0.1 s also let slack_sdk's client notice a close promptly.
    sandbox = SlackSandbox(
        driver_mode="socket", ws_ping_interval=0.1, ack_timeout=PATIENT_ACK_S
    ).start()
    bot = Bot.build(socket_settings(sandbox, sandbox.app_token), engine, poll=0.1)
    try:
        bot.start_workers()
        bot.start_socket_mode()
        yield bot, sandbox
    finally:
        bot.stop()
        sandbox.stop()


@pytest.fixture
def slack(engine: Engine) -> Iterator[SlackSandbox]:
    with socket_bot(engine) as (_bot, sandbox):
        yield sandbox


def reply(ack: Ack) -> dict[str, Any]:
    assert ack.ok and ack.transport == "socket", (ack.status, ack.error, ack.body)
    assert ack.problem is None, ack.problem
    return dict(json.loads(ack.body))


def pins(engine: Engine) -> list[Any]:
    with db.transaction(engine) as s:
        return [e for e in svc.timeline(s, svc.get(s, "INC-1")) if e.kind == "timeline.pinned"]


def test_an_incident_runs_over_socket_mode(slack: SlackSandbox, engine: Engine) -> None:
    assert slack.driver.bot_url is None and slack.socket_mode.connected
    body = reply(slack.driver.slash_command(f"declare sev2 {TITLE}", user="alice"))
    assert body["response_type"] == "in_channel"
    assert "declared *INC-1* (SEV2): " + TITLE in body["text"]
    assert channel_of(engine) == CHANNEL
    snap = slack.snapshot(CHANNEL)
    assert snap.topic == "INC-1 · SEV2 Major · triage" and "alice" in snap.members
    assert len(snap.pinned) == 1 and "INC-1: " + TITLE in snap.pinned[0].text

    sev = reply(slack.driver.slash_command("sev 1", user="alice", channel=CHANNEL))
    assert "changed severity SEV2 → *SEV1*" in sev["text"]
    roles = reply(slack.driver.slash_command("roles", user="bob", channel=CHANNEL))
    assert roles["response_type"] == "ephemeral"
    wrong = reply(slack.driver.slash_command("sev 9", user="bob", channel=CHANNEL))
    assert wrong["text"].startswith("Unknown severity '9'") and "Usage: /incident" in wrong["text"]
    assert incident(engine).severity == "SEV1"
    wait_for(
        lambda: slack.snapshot(CHANNEL).topic == "INC-1 · SEV1 Critical · triage",
        what="topic refresh",
    )

    msg, posted = slack.driver.post_message("alice", CHANNEL, "lighthouse: 12 missed attestations")
    acks = posted + slack.driver.add_reaction("bob", CHANNEL, msg.ts, "pushpin")
    retry = slack.driver.redeliver(acks[-1])  # Slack retrying the envelope's event
    acks.append(retry)
    acks += slack.driver.add_reaction("carol", CHANNEL, msg.ts, "pushpin")  # a second pin
    assert all(a.ok and a.transport == "socket" and a.body == "" for a in acks)
    recorded = wait_for(lambda: pins(engine), what="the pinned message on the timeline")
    assert [p.summary for p in recorded] == ["lighthouse: 12 missed attestations"]
    assert recorded[0].actor == slack.workspace.user("alice").id

    # Each pushpin event is handled once: the bot reads the message back once per pin. The
    # retry of bob's event (same event id) was answered from its first run, not run again.
    def reads() -> list[Any]:
        return slack.requests("conversations.history")

    wait_for(
        lambda: len([r for r in reads() if r.args.get("latest") == msg.ts]) == 2,
        what="both pushpin events handled",
    )
    assert len(pins(engine)) == 1
    retried = json.loads(retry.request.body)["event_id"]
    with db.transaction(engine) as s:
        claim = s.get(InboundRequest, f"slack:event:{retried}")
    assert claim is not None and claim.finished_at is not None  # claimed once, then answered

    assert count(engine, "incident") == 1
    assert all(a.transport == "socket" for a in slack.driver.acks)
    assert [r.method for r in slack.requests("apps.connections.open")] == ["apps.connections.open"]
    assert check_request_log(slack.requests(), load_spec()) == []


def test_the_declare_form_over_socket_mode(slack: SlackSandbox, engine: Engine) -> None:
    """The command's and the form's acks are sent on the socket before the bot calls Slack:
    the form opens, and the confirmation is posted, after them."""
    alice = slack.workspace.user("alice").id
    with held_until_answered(slack, "views.open"):
        opening = slack.driver.slash_command("declare")
    assert reply(opening)["text"] == "Opening the declare form…"
    view = wait_for(
        lambda: [v for v in slack.workspace.views.values() if v.is_open], what="the form"
    )[0]
    bad = slack.driver.view_submission(
        view.id, {"commander": alice, "title": "  ", "severity": "SEV1"}
    )
    assert reply(bad)["response_action"] == "errors" and view.is_open
    assert count(engine, "incident") == 0
    inputs = {"commander": alice, "title": TITLE, "severity": "SEV1"}
    with held_until_answered(slack, "chat.postEphemeral"):
        good = slack.driver.view_submission(view.id, inputs)
    assert good.ok and good.body == "" and not view.is_open
    assert (incident(engine).title, incident(engine).severity) == (TITLE, "SEV1")
    wait_for(
        lambda: [e for e in slack.ephemeral("alice") if "declared *INC-1* (SEV1)" in e.text],
        what="the confirmation",
    )
    assert channel_of(engine) == CHANNEL


def test_the_bot_follows_a_refresh(engine: Engine) -> None:
    with socket_bot(engine) as (bot, slack):
        hub = slack.socket_mode
        first = hub.connections()[0]
        hub.disconnect("refresh_requested")
        wait_for(lambda: first.closed_at, what="the bot to leave the refreshed connection")
        second = wait_for(hub.connections, what="the bot's new connection")[0]
        reply(slack.driver.slash_command(f"declare sev3 {TITLE}", user="alice"))
        assert channel_of(engine) == CHANNEL
        note = reply(slack.driver.slash_command("note geth resynced", user="bob", channel=CHANNEL))
        assert note["text"] == "Noted on the INC-1 timeline."
        assert second.id != first.id and second.acks_received == 2
        assert first.envelopes_sent == 0
        assert len(slack.requests("apps.connections.open")) == 2
        assert bot.slack_state == "socket mode connected"


def test_a_wrong_app_token_stops_the_start(sqlite_template: Path, tmp_path: Path) -> None:
    """Refused at start-up with the reason, not retried in the background (no database
    work is involved, so one back end is enough)."""
    shutil.copyfile(sqlite_template, tmp_path / "bot.db")
    engine = db.make_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    try:
        with SlackSandbox() as sandbox:
            for token, code in [
                (sandbox.bot_token, "not_allowed_token_type"),
                ("xapp-1-not-issued", "invalid_auth"),
            ]:
                bot = Bot.build(socket_settings(sandbox, token), engine)
                try:
                    with pytest.raises(DomainError, match=f"open failed with {code}"):
                        bot.start_socket_mode()
                finally:
                    bot.stop()
            assert not sandbox.socket_mode.connected
            assert [r.response["error"] for r in sandbox.requests("apps.connections.open")] == [
                "not_allowed_token_type",
                "invalid_auth",
            ]
    finally:
        engine.dispose()
