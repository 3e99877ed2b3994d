"""The bot and the local Slack-compatible server, wired together over real sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.bot import Bot
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.sandbox.slack.faults import Fault
from incidentbot.sandbox.slack.server import SlackSandbox

T = TypeVar("T")

# How long the local Slack server waits for the bot's ack in tests. Slack gives up at 3 s
# (the server's default); a test that is not about that rule must not fail because a busy CI
# machine answered in 3.1 s. The tests of the 3 s rule set their own limit, and the
# benchmarks in bench/ measure how fast acks are.
PATIENT_ACK_S = 30.0


@contextmanager
def running_bot(engine: Engine, **overrides: Any) -> Iterator[tuple[Bot, SlackSandbox]]:
    sandbox = SlackSandbox(ack_timeout=PATIENT_ACK_S).start()
    settings = Settings(
        slack_bot_token=sandbox.bot_token,
        slack_signing_secret=sandbox.signing_secret,
        slack={"api_url": sandbox.base_url},
        workers=overrides.pop("workers", 4),
        **overrides,
    )
    bot = Bot.build(settings, engine, poll=0.1)
    try:
        sandbox.driver.bot_url = bot.start_http() + "/slack/events"
        bot.start_workers()
        yield bot, sandbox
    finally:
        bot.stop()
        sandbox.stop()


def wait_for(probe: Callable[[], T | None], *, timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy (durable work happens after the ack)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def held_until_answered(
    slack: SlackSandbox, method: str, bot: Bot | None = None
) -> Iterator[Fault]:
    """Slack takes the next call of ``method`` (``"response_url"``: a post to a response URL)
    but answers the bot only once this block has ended. A command or click sent inside the
    block is acknowledged only if its ack does not wait for that call (else the driver gives up
    on it after :data:`PATIENT_ACK_S`); ``remaining == 0`` says the call was made. With ``bot``,
    its Web API clients wait for Slack longer than the driver waits for the bot, so that an ack
    that waited for the call cannot arrive once the bot gave up on it."""
    answered = threading.Event()
    armed = slack.fail_next(method, "timeout", hold_s=0, applied=True, after=answered.wait)
    clients = [bot.chat.client, bot.bolt.client] if bot is not None else []
    patience = [c.timeout for c in clients]
    for client in clients:
        client.timeout = int(2 * PATIENT_ACK_S)
    try:
        yield armed
    finally:
        answered.set()
        for client, timeout in zip(clients, patience, strict=True):
            client.timeout = timeout


def incident(engine: Engine, ref: str = "INC-1"):  # type: ignore[no-untyped-def]
    with db.transaction(engine) as s:
        return svc.get(s, ref)


def timeline_kinds(engine: Engine, ref: str = "INC-1") -> list[str]:
    with db.transaction(engine) as s:
        return [e.kind for e in svc.timeline(s, svc.get(s, ref))]


def channel_of(engine: Engine, ref: str = "INC-1") -> str:
    """Wait until the incident's channel exists; return its name."""

    def probe() -> str | None:
        inc = incident(engine, ref)
        return inc.channel_name if inc.channel_id and inc.header_ts else None

    return wait_for(probe, what=f"{ref}'s channel and header")


def settled(engine: Engine) -> None:
    """Wait until every durable run has ended (succeeded, failed, needs attention)."""
    from sqlmodel import col, select

    from incidentbot.ledger.models import SETTLED, Run

    def probe() -> bool:
        with db.transaction(engine) as s:
            return not s.exec(select(Run.id).where(col(Run.status).not_in(SETTLED))).first()

    wait_for(probe, what="all runs to finish")


def assert_spec_conformance(sandbox: SlackSandbox) -> None:
    """Every request the bot sent was valid against Slack's own API description (vendored in
    ``incidentbot/sandbox/apispecs``)."""
    from incidentbot.sandbox.slack.spec import check_request_log, load_spec

    assert check_request_log(sandbox.requests(), load_spec()) == []
