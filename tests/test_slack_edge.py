"""The Slack endpoint under hostile and malformed requests, over real sockets.

Whoever can reach ``/slack/events`` can send it anything. A malformed request gets a 4xx with
a short reason (never a 500, never a traceback) and changes nothing; a replay of captured
bytes, or Slack's retry of a command, click or event, is answered without running again.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import text

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.sandbox.slack.transport import sign
from incidentbot.web.slack_edge import MAX_BODY
from tests.conftest import count
from tests.slack_harness import channel_of, running_bot, settled, wait_for

TITLE = "Validator missed attestations"


@pytest.fixture
def bot(engine):
    with running_bot(engine) as (bot, sandbox):
        yield bot, sandbox


def url_of(sandbox) -> str:
    return sandbox.driver.bot_url


def post(sandbox, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url_of(sandbox), content=body, headers=headers, timeout=10)


def signed_headers(sandbox, body: bytes, content_type: str, **extra: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(sandbox.signing_secret, stamp, body),
        **extra,
    }


def declare(sandbox) -> str:
    """INC-1, declared; returns its channel id once it exists."""
    ack = sandbox.driver.slash_command(f"declare sev2 {TITLE}", user="alice")
    assert ack.status == 200, ack.body
    return wait_for(lambda: _channel(sandbox), what="the incident channel")


def _channel(sandbox) -> str | None:
    names = [c for c in sandbox.workspace.channels.values() if c.name.startswith("inc-1-")]
    return names[0].id if names else None


def note_command(sandbox, channel: str, text: str) -> bytes:
    return sandbox.driver.slash_command_request(f"note {text}", user="alice", channel=channel).body


def assert_refused(resp: httpx.Response, status: int, reason: str) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.json() == {"ok": False, "error": reason}
    assert "Traceback" not in resp.text


def test_malformed_requests_are_4xx_and_change_nothing(bot, engine, caplog):
    _, sandbox = bot
    channel = declare(sandbox)
    settled(engine)  # the declare's own effects are all on the timeline
    before = count(engine, "timeline_event")
    body = note_command(sandbox, channel, "should never be recorded")
    form = "application/x-www-form-urlencoded"
    caplog.set_level(logging.WARNING)

    # Signature headers that cannot be checked: 401, whatever the body.
    bad_stamp = {"Content-Type": form, "X-Slack-Request-Timestamp": "soon",
                 "X-Slack-Signature": "v0=" + "0" * 64}  # fmt: skip
    assert_refused(
        post(sandbox, body, bad_stamp), 401, "missing or malformed X-Slack-Request-Timestamp"
    )
    old = signed_headers(sandbox, body, form)
    old["X-Slack-Request-Timestamp"] = str(int(time.time()) - 3600)
    assert_refused(post(sandbox, body, old), 401, "stale request timestamp")
    forged = signed_headers(sandbox, body, form)
    forged["X-Slack-Signature"] = "v0=" + "1" * 64
    assert_refused(post(sandbox, body, forged), 401, "invalid signature")
    unsigned = {"Content-Type": form}
    assert_refused(post(sandbox, b"\xff\xfe\x00text", unsigned), 401,
                   "missing or malformed X-Slack-Request-Timestamp")  # fmt: skip

    # Signed, but not what Slack sends: 400.
    latin = b"command=%2Fincident&text=note+\xe9t\xe9"
    assert_refused(post(sandbox, latin, signed_headers(sandbox, latin, form)), 400,
                   "the body is not UTF-8")  # fmt: skip
    broken = b'{"type": "event_callback", "event": '
    assert_refused(
        post(sandbox, broken, signed_headers(sandbox, broken, "application/json")),
        400,
        "the body is not valid JSON",
    )
    assert_refused(
        post(sandbox, body, signed_headers(sandbox, body, "application/json")),
        400,
        "the body is not valid JSON",
    )
    payload = urlencode({"payload": "{not json"}).encode()
    assert_refused(post(sandbox, payload, signed_headers(sandbox, payload, form)), 400,
                   "the interaction payload is not valid JSON")  # fmt: skip
    # A field given twice: the checked value and the one run could differ; Slack never does.
    twice = body + b"&" + urlencode({"text": "declare sev1 sent twice"}).encode()
    assert_refused(post(sandbox, twice, signed_headers(sandbox, twice, form)), 400,
                   "a form field given twice")  # fmt: skip
    junk = b"a=1&b=2"
    assert_refused(post(sandbox, junk, signed_headers(sandbox, junk, form)), 400,
                   "not a Slack command or interaction")  # fmt: skip

    # Content types Slack never sends: 415, before anything else is looked at.
    for kind in ("text/plain", "multipart/form-data; boundary=x", ""):
        headers = signed_headers(sandbox, body, kind)
        if not kind:
            del headers["Content-Type"]
        assert_refused(post(sandbox, body, headers), 415,
                       "unsupported content type: Slack sends a form or JSON")  # fmt: skip

    # Too large: refused by its declared length, and while streaming when it declares none.
    big = body + b"&pad=" + b"x" * (1024 * 1024)
    assert_refused(post(sandbox, big, signed_headers(sandbox, big, form)), 413,
                   f"request body over {MAX_BODY} bytes")  # fmt: skip

    def chunks():
        for _ in range(40):
            yield b"x" * 4096

    streamed = httpx.post(url_of(sandbox), content=chunks(), headers=signed_headers(
        sandbox, b"", form), timeout=10)  # fmt: skip
    assert_refused(streamed, 413, f"request body over {MAX_BODY} bytes")

    assert count(engine, "timeline_event") == before
    assert "should never be recorded" not in " ".join(
        m.text for m in sandbox.snapshot(channel).messages
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_a_replayed_or_retried_command_runs_once(bot, engine):
    _, sandbox = bot
    channel = declare(sandbox)
    channel_of(engine)  # the bot knows the channel as INC-1's, not only Slack
    form = "application/x-www-form-urlencoded"
    for command in ("note", "update"):
        body = sandbox.driver.slash_command_request(
            f"{command} {command} sent once, delivered three times", user="alice",
            channel=channel,
        ).body  # fmt: skip
        first = post(sandbox, body, signed_headers(sandbox, body, form))
        assert first.status_code == 200, first.text
        replay = post(sandbox, body, signed_headers(sandbox, body, form))  # the same bytes
        retry = post(sandbox, body, signed_headers(sandbox, body, form, **{
            "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}))  # fmt: skip
        # Answered as the first was, without running again.
        assert (replay.status_code, replay.text) == (first.status_code, first.text)
        assert (retry.status_code, retry.text) == (first.status_code, first.text)
    with db.transaction(engine) as s:
        events = svc.timeline(s, svc.get(s, "INC-1"))
        texts = [e.summary for e in events]
    assert sum("note sent once" in t for t in texts) == 1, texts
    assert sum("update sent once" in t for t in texts) == 1, texts
    wait_for(
        lambda: any("update sent once" in m.text for m in sandbox.snapshot(channel).messages),
        what="the update in the channel",
    )
    posted = [m for m in sandbox.snapshot(channel).messages if "update sent once" in m.text]
    assert len(posted) == 1


def test_a_replayed_read_gets_its_first_answer_though_it_was_never_claimed(bot, engine):
    """A read (``list``) is not claimed before it runs: its answer is recorded once sent, and
    a replay or a retry after that gets the first answer, not what is open now."""
    _, sandbox = bot
    form = "application/x-www-form-urlencoded"
    body = sandbox.driver.slash_command_request("list", user="alice").body
    first = post(sandbox, body, signed_headers(sandbox, body, form))
    assert first.status_code == 200, first.text
    assert "No open incidents" in first.text

    def recorded() -> int:
        with db.read(engine) as s:
            return s.execute(
                text("SELECT count(*) FROM inbound_request WHERE finished_at IS NOT NULL "
                     "AND body LIKE '%No open incidents%'")
            ).scalar_one()  # fmt: skip

    wait_for(recorded, what="the list's answer recorded")
    declare(sandbox)  # now something is open: running the replay again would show it
    replay = post(sandbox, body, signed_headers(sandbox, body, form))
    retry = post(sandbox, body, signed_headers(sandbox, body, form, **{
        "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}))  # fmt: skip
    assert (replay.status_code, replay.text) == (first.status_code, first.text)
    assert (retry.status_code, retry.text) == (first.status_code, first.text)
    assert recorded() == 1
    fresh = sandbox.driver.slash_command("list", user="alice")  # a new command runs
    assert "INC-1" in fresh.body, fresh.body


def test_invisible_controls_never_reach_storage_or_slack(bot, engine):
    """NUL (which PostgreSQL refuses), a right-to-left override and zero-width characters in a
    title are removed where the request enters; the visible text is kept as typed."""
    _, sandbox = bot
    ack = sandbox.driver.slash_command(
        "declare sev2 geth\x00 on rpc\u200b-2 \u202eevil\u202c stuck\x07", user="alice"
    )
    assert ack.status == 200, ack.body
    with db.transaction(engine) as s:
        title = svc.get(s, "INC-1").title
    assert title == "geth on rpc-2 evil stuck"
    channel = wait_for(lambda: _channel(sandbox), what="the incident channel")
    wait_for(lambda: sandbox.snapshot(channel).pinned, what="the header")
    shown = " ".join(m.text for m in sandbox.snapshot(channel).messages)
    assert "geth on rpc-2 evil stuck" in shown
    assert not any(c in shown for c in "\x00\u200b\u202e\u202c\x07")


def test_the_first_command_after_startup_asks_slack_nothing_before_its_answer(bot):
    running, sandbox = bot
    assert running.check_slack() == "ok"  # what `serve` does before it takes requests
    before = len(sandbox.requests("auth.test"))
    ack = sandbox.driver.slash_command("list", user="alice", channel="incidents")
    assert ack.status == 200, ack.body
    assert len(sandbox.requests("auth.test")) == before


def quiet_bolt(secret: str):  # type: ignore[no-untyped-def]
    """A Bolt app that asks Slack nothing (a fixed authorization) and answers once its
    listener returns, as the bot's does."""
    from slack_bolt import App
    from slack_bolt.authorization import AuthorizeResult

    who = AuthorizeResult(enterprise_id=None, team_id="T1", bot_token="xoxb-edge", bot_id="B1")
    return App(name="edge-test", signing_secret=secret, authorize=lambda **_: who,
               process_before_response=True)  # fmt: skip


def signed_help(secret: str):  # type: ignore[no-untyped-def]
    """A signed ``/incident help`` as an ASGI scope, and the ``receive`` that gives its body."""
    body = urlencode({"command": "/incident", "text": "help", "team_id": "T1"}).encode()
    stamp = str(int(time.time()))
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": sign(secret, stamp, body),
    }
    scope = {
        "type": "http", "method": "POST", "path": "/slack/events", "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip

    async def receive():  # type: ignore[no-untyped-def]
        return {"type": "http.request", "body": body, "more_body": False}

    return scope, receive


def test_work_that_can_wait_waits_until_the_answer_is_sent():
    """The ledger's next step and an alert storm wait (incidentbot.priority) while a Slack
    answer is prepared and until it is written: the event loop that writes it would otherwise
    compete for the interpreter with them right when Bolt's dispatch returns."""
    import asyncio

    from incidentbot import priority
    from incidentbot.web.slack_edge import SlackEndpoint

    secret = "edge-secret"
    bolt = quiet_bolt(secret)
    during: list[int] = []

    @bolt.command("/incident")
    def answer(ack):  # type: ignore[no-untyped-def]
        during.append(priority.pending())
        ack(text="done")

    scope, receive = signed_help(secret)
    sent: list[tuple[str, int]] = []

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append((message["type"], priority.pending()))

    assert priority.pending() == 0
    asyncio.run(SlackEndpoint(bolt, secret)(scope, receive, send))
    # Held from the dispatch until the answer's last bytes were handed to the socket.
    assert during == [1]
    assert sent == [("http.response.start", 1), ("http.response.body", 1)]
    assert priority.pending() == 0
    # A refused request holds nothing back.
    forged = dict(scope, headers=[(k, b"v0=" + b"0" * 64 if k == b"x-slack-signature" else v)
                                  for k, v in scope["headers"]])  # fmt: skip
    sent.clear()
    asyncio.run(SlackEndpoint(bolt, secret)(forged, receive, send))
    assert sent == [("http.response.start", 0), ("http.response.body", 0)]
