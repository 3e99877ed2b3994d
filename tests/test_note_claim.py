"""A note typed in an incident's channel is claimed in its own transaction, as a declare is
(see test_declare_claim.py): the claim and the note commit together, and Slack's retry of the
same command gets the first answer without noting twice."""

from __future__ import annotations

import httpx
from sqlalchemy import event, text

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from tests.conftest import count
from tests.test_declare_claim import idle_bot, signed

NOTE = "validator set rotated at 14:02"


def notes(engine) -> list[str]:
    with db.read(engine) as s:
        rows = s.execute(text("SELECT summary FROM timeline_event WHERE kind = 'note'"))
        return [str(r[0]) for r in rows]


def test_a_note_is_claimed_with_its_event_and_a_retry_gets_its_answer(engine, slack_sandbox):
    sandbox = slack_sandbox
    channel = sandbox.workspace.channel("incidents")
    with db.transaction(engine) as s:
        inc = svc.declare(s, Settings(), title="Sequencer stalled", severity="SEV2", actor="U1")
        inc.channel_id, inc.channel_name = channel.id, channel.name
        s.add(inc)
    bot = idle_bot(engine, sandbox)
    seen: list[str] = []

    def statement(_conn, _cursor, sql: str, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(" ".join(sql.split()).upper())

    try:
        url = sandbox.driver.bot_url = bot.start_http() + "/slack/events"
        request = sandbox.driver.slash_command_request(f"note {NOTE}", user="alice")
        claims_before = count(engine, "inbound_request")
        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "commit", lambda _conn: seen.append("COMMIT"))
        first = httpx.post(url, content=request.body, headers=signed(sandbox, request.body),
                           timeout=30)  # fmt: skip
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        again = httpx.post(url, content=request.body,
                           headers=signed(sandbox, request.body, **retry), timeout=30)  # fmt: skip
    finally:
        bot.stop()
    assert first.status_code == again.status_code == 200
    assert first.json()["text"] == "Noted on the INC-1 timeline."
    assert again.text == first.text  # the first answer, not a second note
    assert notes(engine) == [NOTE]
    assert count(engine, "inbound_request") == claims_before + 1
    claims = [i for i, q in enumerate(seen) if "INSERT INTO INBOUND_REQUEST " in q]
    events = [i for i, q in enumerate(seen) if "INSERT INTO TIMELINE_EVENT " in q]
    # The first claim, then the note in the same transaction: no commit between them.
    assert claims and events and claims[0] < events[0], seen
    assert "COMMIT" not in seen[claims[0] : events[0]], seen
