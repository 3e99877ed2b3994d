"""A declare is claimed in its own transaction: its claim (which makes a replay or a retry of the
request get the first answer) and its incident commit together or not at all, whether it was
typed as a slash command or submitted from the declare form.

The bot runs as a real process, stopped inside the declare's transaction (after the claim and
the incident were written) and SIGKILLed there. Nothing of the request is stored, so Slack's
retry, served by a new process, declares it, once; a retry after that gets the first answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, text

from incidentbot import db, inbound_answers
from incidentbot.bot import Bot
from incidentbot.clock import set_clock
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.sandbox.slack.transport import SignedRequest, sign
from tests.conftest import count
from tests.slack_harness import wait_for

ROOT = Path(__file__).resolve().parent.parent
TITLE = "Sequencer stopped producing blocks"


def signed(sandbox, body: bytes, **extra: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(sandbox.signing_secret, stamp, body),
        **extra,
    }


class HeldBot:
    """A bot process (``python -m <module>``) that serves Slack and stops dead at a point its
    module chooses, printing a marker there, until the test kills it."""

    def __init__(self, child: subprocess.Popen, sandbox) -> None:  # type: ignore[no-untyped-def]
        self.child, self.sandbox = child, sandbox
        first_line = child.stdout.readline().split() if child.stdout else []
        assert first_line[:1] == ["url"], first_line
        self.url = sandbox.driver.bot_url = first_line[1]
        self.sender: threading.Thread | None = None
        self.failed: list[Exception] = []

    def send(self, body: bytes, *, until: str) -> None:
        """POST ``body`` signed from a thread of its own; return once the bot prints ``until``."""

        def post() -> None:
            try:
                httpx.post(self.url, content=body, headers=signed(self.sandbox, body), timeout=60)
            except httpx.HTTPError as exc:
                self.failed.append(exc)

        self.sender = threading.Thread(target=post)
        self.sender.start()
        assert self.child.stdout is not None
        assert self.child.stdout.readline().strip() == until

    def kill(self) -> None:
        """SIGKILL the process; the request it held must get no answer."""
        self.child.kill()
        self.child.wait(20)
        assert self.sender is not None
        self.sender.join(20)
        assert self.failed, "the killed process answered"


@contextlib.contextmanager
def held_bot(module: str, database_url: str, sandbox) -> Iterator[HeldBot]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", module, database_url, sandbox.base_url, sandbox.bot_token,
         sandbox.signing_secret],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        yield HeldBot(child, sandbox)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(20)


def declare_request(sandbox, door: str) -> SignedRequest:
    """A declare of TITLE as alice: typed as a slash command, or submitted from the declare form
    (opened first with ``/incident declare``, through the bot the driver points at)."""
    if door == "command":
        return sandbox.driver.slash_command_request(f"declare sev2 {TITLE}", user="alice")
    opened = sandbox.driver.slash_command("declare", user="alice")
    assert json.loads(opened.body)["text"] == "Opening the declare form…", opened.body
    [form] = wait_for(
        lambda: [v for v in sandbox.workspace.views.values() if v.is_open], what="the form"
    )
    inputs = {"title": TITLE, "severity": "SEV2", "commander": sandbox.workspace.user("alice").id}
    return sandbox.driver.view_submission_request(form.id, inputs)


def declared_text(sandbox, door: str, answer: httpx.Response, ref: str) -> str:
    """What alice is told of the declare: the command's answer, or (the form closes with an
    empty answer) the confirmation only she sees."""
    if door == "command":
        return str(json.loads(answer.text)["text"])
    assert answer.text == "", answer.text
    told = wait_for(
        lambda: [e.text for e in sandbox.ephemeral("alice") if f"*{ref}*" in e.text],
        what="the declare's confirmation",
    )
    return told[0]


def idle_bot(engine, sandbox) -> Bot:
    """The bot wired to ``sandbox``, its one worker polling once a minute: what a request
    writes is counted before any run of it is worked."""
    settings = Settings(
        slack_bot_token=sandbox.bot_token,
        slack_signing_secret=sandbox.signing_secret,
        slack={"api_url": sandbox.base_url},
        workers=1,
    )
    return Bot.build(settings, engine, poll=60)


def stored(engine, table: str) -> int:
    """Rows committed in ``table``, read without waiting for a writer (SQLite's lock)."""
    with db.read(engine) as s:
        return int(s.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.mark.parametrize("door", ["command", "form"])
def test_a_declare_killed_before_its_commit_is_declared_once_by_slacks_retry(
    engine, database_url, slack_sandbox, door
):
    sandbox = slack_sandbox
    with held_bot("tests.declare_claim_child", database_url, sandbox) as held:
        request = declare_request(sandbox, door)
        opening = stored(engine, "inbound_request")  # the command that opened the form
        held.send(request.body, until="inside")
        # Claimed and declared inside the transaction: none of it is visible yet.
        assert stored(engine, "inbound_request") == opening
        assert stored(engine, "incident") == 0
        held.kill()
    # Nothing stored: neither a claim without its incident nor an incident without its claim.
    assert count(engine, "inbound_request") == opening
    assert count(engine, "incident") == count(engine, "ledger_run") == 0

    bot = idle_bot(engine, sandbox)  # the runs are counted, not run
    try:
        url = bot.start_http() + "/slack/events"
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        answers = [
            httpx.post(url, content=request.body, headers=signed(sandbox, request.body, **retry),
                       timeout=30)
            for _ in range(2)
        ]  # fmt: skip
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        # INC-1 (on PostgreSQL INC-2: the killed transaction took a number from the sequence,
        # which no rollback gives back, see incidents.declaring).
        ref = "INC-2" if engine.dialect.name == "postgresql" else "INC-1"
        text = declared_text(sandbox, door, answers[0], ref)
    finally:
        bot.stop()
    assert f"declared *{ref}* (SEV2): {TITLE}" in text, text
    assert answers[1].text == answers[0].text  # the retry of the retry: the first answer
    assert count(engine, "incident") == 1
    with db.read(engine) as s:
        assert svc.get(s, ref).title == TITLE
    assert count(engine, "inbound_request") == opening + 1
    assert count(engine, "ledger_run") == 2  # its channel and its announcement, once each


@pytest.mark.parametrize("door", ["command", "form"])
def test_a_declares_claim_commits_with_its_incident_and_a_retry_gets_its_answer(
    engine, slack_sandbox, door
):
    sandbox = slack_sandbox
    bot = idle_bot(engine, sandbox)
    seen: list[str] = []

    def statement(_conn, _cursor, sql: str, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(" ".join(sql.split()).upper())

    try:
        sandbox.driver.bot_url = bot.start_http() + "/slack/events"
        request = declare_request(sandbox, door)
        opening = count(engine, "inbound_request")
        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "commit", lambda _conn: seen.append("COMMIT"))
        first = httpx.post(
            bot_url := sandbox.driver.bot_url,
            content=request.body,
            headers=signed(sandbox, request.body),
            timeout=30,
        )
        claims = [i for i, q in enumerate(seen) if "INSERT INTO INBOUND_REQUEST " in q]
        incidents = [i for i, q in enumerate(seen) if "INSERT INTO INCIDENT " in q]
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        again = httpx.post(bot_url, content=request.body,
                           headers=signed(sandbox, request.body, **retry), timeout=30)  # fmt: skip
        assert first.status_code == again.status_code == 200
        text = declared_text(sandbox, door, first, "INC-1")
    finally:
        bot.stop()
    assert f"declared *INC-1* (SEV2): {TITLE}" in text, text
    assert again.text == first.text
    # One claim, written first in the declare's transaction (on PostgreSQL in the incident's
    # own statement): no commit between it and the incident.
    assert len(claims) == len(incidents) == 1, seen
    assert claims[0] <= incidents[0] and "COMMIT" not in seen[claims[0] : incidents[0]], seen
    assert count(engine, "incident") == 1
    assert count(engine, "inbound_request") == opening + 1


def test_a_declare_with_a_bad_signature_is_refused_and_claims_nothing(engine, slack_sandbox):
    """A declare is claimed only inside its transaction: a forged one is refused at the edge
    before anything runs, and claims nothing that would make the real one look like a replay."""
    sandbox = slack_sandbox
    bot = idle_bot(engine, sandbox)
    try:
        url = sandbox.driver.bot_url = bot.start_http() + "/slack/events"
        request = sandbox.driver.slash_command_request(f"declare sev2 {TITLE}", user="alice")
        wrong_key = signed(sandbox, request.body)
        stamp = wrong_key["X-Slack-Request-Timestamp"]
        wrong_key["X-Slack-Signature"] = sign("not-the-secret", stamp, request.body)
        tampered = request.body.replace(b"sev2", b"sev1")
        answers = [
            httpx.post(url, content=request.body, headers=wrong_key, timeout=30),
            httpx.post(url, content=tampered, headers=signed(sandbox, request.body), timeout=30),
        ]
        # The same request, signed: it runs (the refusals claimed nothing).
        ok = httpx.post(url, content=request.body, headers=signed(sandbox, request.body),
                        timeout=30)  # fmt: skip
    finally:
        bot.stop()
    for refused in answers:
        assert refused.status_code == 401, refused.text
        assert refused.json() == {"ok": False, "error": "invalid signature"}
    assert ok.status_code == 200 and "declared *INC-1* (SEV2)" in ok.json()["text"]
    assert count(engine, "incident") == count(engine, "inbound_request") == 1


def test_a_declare_refused_in_its_transaction_is_tried_again_by_slacks_retry(
    engine, slack_sandbox, monkeypatch
):
    """A declare refused after its claim was written (the form's impact time is ahead of the
    bot's clock) is rolled back with its claim: nothing of it is stored, not even its answer,
    so Slack's retry of the same submission runs again, and declares once the clock has
    passed that time, instead of being told the first refusal again."""
    sandbox = slack_sandbox
    stores = threading.Event()  # the answers of the requests wait, as in a burst, in memory
    store = inbound_answers.finish_many

    def held(*args, **kwargs):  # type: ignore[no-untyped-def]
        stores.wait(60)
        return store(*args, **kwargs)

    monkeypatch.setattr(inbound_answers, "finish_many", held)
    start = datetime.now(UTC).replace(microsecond=0)
    impact = start + timedelta(minutes=10)
    bot = idle_bot(engine, sandbox)
    try:
        set_clock(lambda: start)
        sandbox.driver.bot_url = bot.start_http() + "/slack/events"
        opened = sandbox.driver.slash_command("declare", user="alice")
        assert json.loads(opened.body)["text"] == "Opening the declare form…", opened.body
        [form] = wait_for(
            lambda: [v for v in sandbox.workspace.views.values() if v.is_open], what="the form"
        )
        inputs = {
            "title": TITLE,
            "severity": "SEV2",
            "commander": sandbox.workspace.user("alice").id,
            "impact_started": int(impact.timestamp()),
        }
        request = sandbox.driver.view_submission_request(form.id, inputs)
        first = httpx.post(sandbox.driver.bot_url, content=request.body,
                           headers=signed(sandbox, request.body), timeout=30)  # fmt: skip
        set_clock(lambda: start + timedelta(minutes=20))
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        again = httpx.post(sandbox.driver.bot_url, content=request.body,
                           headers=signed(sandbox, request.body, **retry), timeout=30)  # fmt: skip
        assert first.status_code == again.status_code == 200
        refusal = json.loads(first.text)
        text = declared_text(sandbox, "form", again, "INC-1")
    finally:
        set_clock(None)
        stores.set()
        bot.stop()
    assert refusal["response_action"] == "errors", refusal
    assert "in the future" in refusal["errors"]["impact_started"], refusal
    assert f"declared *INC-1* (SEV2): {TITLE}" in text, text
    assert count(engine, "incident") == 1
    with db.read(engine) as s:
        assert svc.get(s, "INC-1").impact_started_at == impact
    # The command that opened the form and the declare that ran: the refusal claimed nothing.
    assert count(engine, "inbound_request") == 2
