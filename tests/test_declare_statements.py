"""What one declare typed in Slack costs the database while Slack waits for its answer.

On PostgreSQL every statement is a round trip to a server that may share the bot's CPUs: the
declare's claim, its incident, commander and first events are one statement, its two runs (the
channel, the announcement) two more, then the commit. On SQLite, where a statement costs no
round trip, they stay separate statements. A declare that grows a statement shows here.
"""

from __future__ import annotations

import threading

import httpx
from sqlalchemy import event, text

from incidentbot import db
from tests.conftest import count
from tests.test_declare_claim import TITLE, idle_bot, signed

# The declare's statements on the thread that answers it, after the first declare of the
# process (which reads who the bot is and compiles the statements).
EXPECTED = {
    "postgresql": [
        "WITH claim AS (INSERT INTO inbound_request",
        "INSERT INTO ledger_run",
        "INSERT INTO ledger_step",
    ],
    "sqlite": [
        "INSERT INTO inbound_request",
        "SELECT incident.id FROM incident",
        "UPDATE counter",
        "INSERT INTO incident",
        "INSERT INTO role_assignment",
        "INSERT INTO timeline_event",
        "INSERT INTO ledger_run",
        "INSERT INTO ledger_step",
    ],
}
_FRAMING = ("BEGIN", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


def test_a_declare_typed_in_slack_makes_its_statements_and_no_more(engine, slack_sandbox):
    sandbox = slack_sandbox
    bot = idle_bot(engine, sandbox)  # its runs are queued, not worked
    seen: list[tuple[int, str]] = []

    def statement(_conn, _cursor, sql: str, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append((threading.get_ident(), " ".join(sql.split())))

    def commit(_conn) -> None:  # type: ignore[no-untyped-def]
        seen.append((threading.get_ident(), "COMMIT"))

    try:
        url = sandbox.driver.bot_url = bot.start_http() + "/slack/events"
        for title in ("Warm-up", TITLE):
            if title == TITLE:
                event.listen(engine, "before_cursor_execute", statement)
                event.listen(engine, "commit", commit)
            request = sandbox.driver.slash_command_request(f"declare sev2 {title}", user="alice")
            answer = httpx.post(url, content=request.body,
                                headers=signed(sandbox, request.body), timeout=30)  # fmt: skip
            assert answer.status_code == 200 and "declared *INC-" in answer.json()["text"]
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
    finally:
        bot.stop()
    [answering] = {thread for thread, sql in seen if "INSERT INTO incident " in sql}
    mine = [sql for thread, sql in seen if thread == answering and not sql.startswith(_FRAMING)]
    expected = EXPECTED[engine.dialect.name]
    assert len(mine) - mine.count("COMMIT") == len(expected), mine
    assert all(sql.startswith(e) for sql, e in zip(mine, expected, strict=False)), mine
    if engine.dialect.name == "postgresql":
        assert mine[len(expected):] == ["COMMIT"], mine  # fmt: skip

    # What the one statement wrote is the declare: its number, commander and first events.
    assert "declared *INC-2* (SEV2)" in answer.json()["text"]
    with db.read(engine) as s:
        events = s.execute(
            text(
                "SELECT e.kind, e.summary FROM timeline_event e JOIN incident i"
                " ON i.id = e.incident_id WHERE i.number = 2 ORDER BY e.id"
            )
        ).all()
        roles = s.execute(
            text(
                'SELECT r.role, r."user" FROM role_assignment r JOIN incident i'
                " ON i.id = r.incident_id WHERE i.number = 2"
            )
        ).all()
    user = sandbox.workspace.user("alice").id
    assert [tuple(e) for e in events] == [
        ("incident.declared", f"Declared INC-2 (SEV2): {TITLE}"),
        ("role.assigned", f"{user} is commander"),
    ]
    assert [tuple(r) for r in roles] == [("commander", user)]
    assert count(engine, "inbound_request") == count(engine, "incident") == 2
