"""What one declare typed in Slack costs the database while Slack waits for its answer.

On PostgreSQL every statement is a round trip to a server that may share the bot's CPUs: the
declare's claim, its incident, commander, first events and its two runs (the channel, the
announcement) with their steps are one statement, then the commit. On SQLite, where a
statement costs no round trip, they stay separate statements. A declare that grows a
statement shows here.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from sqlalchemy import event, text

from incidentbot import db, inbound, ledger
from incidentbot.errors import DomainError
from incidentbot.usecases import incidents as uc
from incidentbot.usecases.core import Actor, Core
from tests.conftest import count
from tests.test_declare_claim import TITLE, idle_bot, signed

# The declare's statements on the thread that answers it, after the first declare of the
# process (which reads who the bot is and compiles the statements).
EXPECTED = {
    "postgresql": ["WITH claim AS (INSERT INTO inbound_request"],
    "sqlite": [
        "INSERT INTO inbound_request",
        "UPDATE counter",
        "INSERT INTO incident",
        "INSERT INTO role_assignment",
        "INSERT INTO timeline_event",
        "INSERT INTO ledger_run",
        "INSERT INTO ledger_step",
    ],
}
_FRAMING = ("BEGIN", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


@pytest.fixture
def chat_actions() -> None:
    # Declares with a chat queue their runs here (no worker runs them): the actions must be
    # known, as they are in a bot or the CLI.
    for name in ("chat.open_channel", "chat.digest"):
        if ledger.registry.get(name) is None:
            ledger.registry.register(name, lambda *_a, **_k: None, idempotent=True)


def test_a_declare_typed_in_slack_makes_its_statements_and_no_more(engine, slack_sandbox):
    sandbox = slack_sandbox
    bot = idle_bot(engine, sandbox)  # its runs are queued, not worked
    seen: list[tuple[int, str]] = []
    created: list[tuple[int, str]] = []  # the ledger's committed run.created events
    unsubscribe = ledger.subscribe(
        lambda ev: created.append((ev.run_id, ev.run_kind)) if ev.kind == "run.created" else None
    )

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
        # Slack's retry of it gets its answer; it writes nothing and takes no INC number.
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        again = httpx.post(url, content=request.body,
                           headers=signed(sandbox, request.body, **retry), timeout=30)  # fmt: skip
        after = sandbox.driver.slash_command_request("declare sev2 Bridge relayer stuck")
        following = httpx.post(url, content=after.body, headers=signed(sandbox, after.body),
                               timeout=30)  # fmt: skip
    finally:
        bot.stop()
        unsubscribe()
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
    # Its two runs and their steps, as queued on either back end, each announced once
    # committed (what wakes the workers).
    with db.read(engine) as s:
        runs = s.execute(
            text(
                "SELECT r.id, r.kind, r.idempotency_key, r.status, r.cursor, r.created_by,"
                " r.takeovers, r.wake_at, r.created_at IS NOT NULL, r.spec FROM ledger_run r"
                " JOIN incident i ON i.id = r.incident_id WHERE i.number = 2 ORDER BY r.id"
            )
        ).all()
        steps = s.execute(
            text(
                "SELECT r.kind, t.idx, t.action, t.status, t.attempts, t.idempotent, t.input"
                " FROM ledger_step t JOIN ledger_run r ON r.id = t.run_id"
                " JOIN incident i ON i.id = r.incident_id WHERE i.number = 2 ORDER BY t.id"
            )
        ).all()
    assert [tuple(r[1:9]) for r in runs] == [
        ("incident.channel", "INC-2:channel", "pending", 0, user, 0, None, True),
        ("incident.refresh", "INC-2:refresh:declared", "pending", 0, user, 0, None, True),
    ]
    spec = runs[0][9] if isinstance(runs[0][9], dict) else json.loads(runs[0][9])
    assert [step["action"] for step in spec["steps"]] == ["chat.open_channel"]
    assert [tuple(t[:6]) for t in steps] == [
        ("incident.channel", 0, "chat.open_channel", "pending", 0, True),
        ("incident.refresh", 0, "chat.digest", "pending", 0, True),
    ]
    inputs = [t[6] if isinstance(t[6], dict) else json.loads(t[6]) for t in steps]
    assert inputs == [{"declarer": user, "furnish": True}, {"announce": True}]
    ids = [r[0] for r in runs]
    assert [c for c in created if c[0] in ids] == [
        (ids[0], "incident.channel"),
        (ids[1], "incident.refresh"),
    ]
    assert again.text == answer.text
    assert "declared *INC-3* (SEV2): Bridge relayer stuck" in following.json()["text"]
    assert count(engine, "inbound_request") == count(engine, "incident") == 3
    assert count(engine, "ledger_run") == 6  # the retry queued nothing


def test_a_replayed_declare_writes_nothing_and_takes_no_number(engine, settings):
    """The claim is checked in the declare's statement on PostgreSQL: a request claimed before
    stops there, with no incident and no INC number taken (the next declare is INC-2)."""
    core = Core(settings, engine, chat=False)
    alice = Actor("U0ALICE", "slack")
    with inbound.deferred("slack:trigger:T1") as first:
        uc.declare(core, alice, title="Sequencer stalled", key="slack:command:T1")
    with pytest.raises(inbound.Taken), inbound.deferred("slack:trigger:T1") as replay:
        uc.declare(core, alice, title="Sequencer stalled", key="slack:command:T1")
    nxt = uc.declare(core, alice, title="Bridge relayer stuck")
    assert first.claimed and replay.taken and not replay.claimed
    assert nxt.ref == "INC-2"
    assert count(engine, "incident") == 2 and count(engine, "inbound_request") == 1


def test_a_repeated_declare_finds_the_runs_its_first_queued(engine, settings, chat_actions):
    """A declare repeating an idempotency key writes no incident, so its statement writes no
    run: the runs the first one queued are found, none is queued twice; a refused declare
    queues nothing."""
    core = Core(settings, engine)  # with a chat: the channel and announcement are queued
    alice = Actor("U0ALICE", "slack")
    first = uc.declare(core, alice, title="Sequencer stalled", key="cli:declare:1")
    again = uc.declare(core, alice, title="Sequencer stalled", key="cli:declare:1")
    with pytest.raises(DomainError):
        uc.declare(core, alice, title="   ")
    assert again.incident_id == first.incident_id and again.ref == "INC-1"
    with db.read(engine) as s:
        keys = s.execute(text("SELECT idempotency_key FROM ledger_run ORDER BY id")).scalars()
        assert list(keys) == ["INC-1:channel", "INC-1:refresh:declared"]
    assert count(engine, "ledger_step") == 2 and count(engine, "incident") == 1


def test_a_declare_whose_run_key_is_taken_keeps_the_run_of_its_kind_or_is_refused(
    engine, settings, chat_actions
):
    """A run already keyed as a new incident's channel (left from an earlier database whose
    numbers were reused) is that run if it opens a channel; if it is another kind of run, the
    declare is refused and writes nothing."""
    from incidentbot.ledger import service as runs

    core = Core(settings, engine)
    alice = Actor("U0ALICE", "slack")
    noop = [{"name": "wait", "action": "ledger.noop"}]
    with db.transaction(engine) as s:
        runs.start_run(s, kind="incident.channel", key="INC-1:channel", steps=noop, actor="old")
        runs.start_run(s, kind="other.kind", key="INC-2:channel", steps=noop, actor="old")
    first = uc.declare(core, alice, title="Sequencer stalled")
    with pytest.raises(DomainError):
        uc.declare(core, alice, title="Bridge relayer stuck")
    assert first.ref == "INC-1" and count(engine, "incident") == 1
    with db.read(engine) as s:
        rows = s.execute(
            text("SELECT idempotency_key, created_by FROM ledger_run ORDER BY idempotency_key")
        ).all()
    assert [tuple(r) for r in rows] == [
        ("INC-1:channel", "old"),
        ("INC-1:refresh:declared", "U0ALICE"),
        ("INC-2:channel", "old"),
    ]
    with db.read(engine) as s:
        actions = s.execute(text("SELECT action FROM ledger_step ORDER BY action")).scalars()
        assert list(actions) == ["chat.digest", "ledger.noop", "ledger.noop"]
