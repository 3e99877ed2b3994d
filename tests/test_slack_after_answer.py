"""The Slack calls a command or a click makes wait for its answer (incidentbot.slack.after_answer):
forms open first, messages once the other answers are out, and a call Slack refuses is logged
without changing what was answered or recorded."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from urllib.parse import parse_qs

import pytest

from incidentbot import priority
from incidentbot.slack import after_answer
from incidentbot.slack.runbook_blocks import APPROVE
from incidentbot.web.slack_edge import SlackEndpoint
from tests.conftest import count
from tests.slack_harness import running_bot, wait_for
from tests.test_slack_edge import quiet_bolt, signed_help

BOUND_S = 20.0  # how long a test waits for something that happens on its own


def test_calls_wait_for_the_outermost_answer_and_a_form_goes_first() -> None:
    made: list[str] = []
    done = threading.Event()
    with after_answer.answer():  # the door: until the answer's last byte is written
        with after_answer.answer():  # Bolt's dispatch, inside it
            after_answer.then("a reply", lambda: made.append("reply"))
            after_answer.then("a form", lambda: made.append("form"), at_once=True)
            after_answer.then("the last", done.set)
        assert made == []  # the dispatch returned; the answer is not written yet
        assert not done.is_set()
    assert done.wait(BOUND_S)
    assert made == ["form", "reply"]


def test_outside_a_request_a_call_is_made_at_once() -> None:
    made: list[str] = []
    after_answer.then("a message update", lambda: made.append("updated"))
    assert made == ["updated"]  # the CLI, a scheduled job: nobody waits for an answer


def test_a_failing_call_is_logged_and_the_next_one_still_made(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = threading.Event()

    def refused() -> None:
        raise RuntimeError("the response URL answered 500")

    with caplog.at_level(logging.WARNING, logger=after_answer.__name__):
        with after_answer.answer():
            after_answer.then("the reply about run 7", refused)
            after_answer.then("the confirmation", done.set)
        assert done.wait(BOUND_S)
    [record] = [r for r in caplog.records if r.name == after_answer.__name__]
    assert record.getMessage() == (
        "the reply about run 7 failed after the answer: RuntimeError: the response URL answered 500"
    )


def test_a_form_opens_while_other_answers_are_pending_and_a_message_waits_for_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """views.open cannot wait (the trigger expires 3 s after the click); a message can, for the
    other answers being sent (here one held open until the test lets it go)."""
    monkeypatch.setattr(after_answer, "YIELD_S", 600.0)  # only the other answer ends the wait
    other_answering, other_answered = threading.Event(), threading.Event()

    def other_request() -> None:
        with priority.urgent():
            other_answering.set()
            other_answered.wait()

    other = threading.Thread(target=other_request, daemon=True)
    other.start()
    try:
        assert other_answering.wait(BOUND_S)
        opened, told = threading.Event(), threading.Event()
        with after_answer.answer():
            after_answer.then("the confirmation", told.set)
            after_answer.then("views.open", opened.set, at_once=True)
        assert opened.wait(BOUND_S)
        wait_for(lambda: priority.deferred() == 1, what="the message waiting for the answer")
        assert not told.is_set()
    finally:
        other_answered.set()
        other.join(BOUND_S)
    assert told.wait(BOUND_S)


def test_over_http_a_listeners_calls_start_once_the_answers_last_byte_is_sent() -> None:
    """Bolt's dispatch runs in the thread pool; what its listener hands over starts after the
    event loop has written the answer."""
    secret = "after-secret"
    bolt = quiet_bolt(secret)
    seen: list[str] = []
    replied = threading.Event()

    def reply() -> None:
        seen.append("the reply")
        replied.set()

    @bolt.command("/incident")
    def answer(ack):  # type: ignore[no-untyped-def]
        after_answer.then("the reply", reply)
        ack(text="done")

    scope, receive = signed_help(secret)

    async def send(message):  # type: ignore[no-untyped-def]
        seen.append(message["type"])

    asyncio.run(SlackEndpoint(bolt, secret)(scope, receive, send))
    assert replied.wait(BOUND_S)
    assert seen == ["http.response.start", "http.response.body", "the reply"]


def test_a_click_whose_reply_slack_refuses_is_answered_and_logged_without_its_url(
    engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), running_bot(engine) as (bot, slack):
        where = slack.workspace.channel("incidents").id
        button = {"type": "button", "action_id": APPROVE, "value": "999",
                  "text": {"type": "plain_text", "text": "Approve"}}  # fmt: skip
        ts = bot.chat.post(where, "Run 999", [{"type": "actions", "elements": [button]}])
        refused = slack.fail_next("response_url", "server_error", status=500)
        ack = slack.driver.block_action(APPROVE, user="alice", channel="incidents", message_ts=ts)
        assert ack.ok, ack  # answered: the refusal comes after
        wait_for(lambda: refused.remaining == 0, what="the reply sent")
        wait_for(
            lambda: [r for r in caplog.records if "failed after the answer" in r.getMessage()],
            what="the failure logged",
        )
        assert not slack.ephemeral("alice")
    url = json.loads(parse_qs(ack.request.body.decode())["payload"][0])["response_url"]
    secret = url.rsplit("/", 1)[-1]
    assert secret not in caplog.text
    assert "the reply about run 999 failed after the answer" in caplog.text


def test_a_form_slack_does_not_open_is_explained_and_nothing_is_declared(engine) -> None:
    with running_bot(engine) as (_bot, slack):
        slack.fail_next("views.open", "server_error", status=503, count=10)
        ack = slack.driver.slash_command("", user="bob", channel="incidents")
        assert ack.ok and json.loads(ack.body)["text"] == "Opening the declare form…"
        told = wait_for(
            lambda: [e.text for e in slack.ephemeral("bob") if "could not open" in e.text],
            what="why the form did not open",
        )
        assert told == [
            "The declare form could not open; use `/incident declare [sev] &lt;title&gt;` instead."
        ]
        assert not [v for v in slack.workspace.views.values() if v.is_open]
    assert count(engine, "incident") == 0
