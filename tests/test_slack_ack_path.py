"""What a slash command does before Slack hears back: a declare reads nothing it does not need,
writes the incident, its commander and first events together, and a retry changes nothing;
commands that depend on the channel still find its incident."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.slack.commands import CommandHandler
from incidentbot.usecases.core import Core


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def log(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", log)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", log)


def test_a_declare_reads_no_channel_and_a_retry_declares_nothing_twice(
    engine: Engine, settings: Settings
) -> None:
    # No chat: the effects' actions are registered by a bot, none runs here.
    handler = CommandHandler(Core(settings, engine, chat=False))
    with db.transaction(engine) as s:  # typed in an incident's channel, as people do
        svc.declare(s, settings, title="RPC p99 above 2s", severity="2", actor="U1")
        s.execute(text("UPDATE incident SET channel_id = 'C1' WHERE number = 1"))

    with statements(engine) as seen:
        reply = handler.handle(
            user_id="U2", channel_id="C1", text="declare sev1 geth <b>stuck</b>", trigger_id="t1"
        )
    assert "declared *INC-2* (SEV1): geth &lt;b&gt;stuck&lt;/b&gt;" in reply.text
    assert not [q for q in seen if "incident.channel_id" in q], seen
    assert not [q for q in seen if q.upper().startswith("UPDATE INCIDENT")], seen

    again = handler.handle(
        user_id="U2", channel_id="C1", text="declare sev1 geth <b>stuck</b>", trigger_id="t1"
    )
    assert "*INC-2*" in again.text
    with db.read(engine) as s:
        inc = svc.get(s, "INC-2")
        assert (inc.title, inc.severity, inc.commander, inc.channel_id) == (
            "geth <b>stuck</b>",
            "SEV1",
            "U2",
            None,
        )
        assert [e.kind for e in svc.timeline(s, inc)] == ["incident.declared", "role.assigned"]
        assert [(r.role, r.user) for r in svc.active_roles(s, inc)] == [("commander", "U2")]
        incidents = s.execute(text("SELECT count(*) FROM incident")).scalar_one()
    assert incidents == 2


def test_a_declare_with_milestones_records_them_between_the_declare_and_the_commander(
    engine: Engine, settings: Settings
) -> None:
    now = utcnow()
    with db.transaction(engine) as s:
        inc = svc.declare(
            s,
            settings,
            title="finality stalled",
            severity="1",
            actor="U1",
            commander="U3",
            impact_started_at=now - timedelta(minutes=9),
            detected_at=now - timedelta(minutes=4),
            now=now,
        )
        inc.channel_id = "C7"  # a change later in the same transaction is an update
        s.add(inc)
    with db.read(engine) as s:
        stored = svc.get(s, "INC-1")
        kinds = [(e.kind, e.data.get("milestone")) for e in svc.timeline(s, stored)]
    assert stored.channel_id == "C7" and stored.commander == "U3"
    assert stored.impact_started_at == now - timedelta(minutes=9)
    assert kinds == [
        ("incident.declared", None),
        ("milestone.set", "impact_started"),
        ("milestone.set", "detected"),
        ("role.assigned", None),
    ]


def test_commands_that_need_the_channel_still_find_its_incident(
    engine: Engine, settings: Settings
) -> None:
    handler = CommandHandler(Core(settings, engine, chat=False))
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="RPC p99 above 2s", severity="2", actor="U1")
        s.execute(text("UPDATE incident SET channel_id = 'C1' WHERE number = 1"))

    bare = handler.handle(user_id="U1", channel_id="C1", text="", trigger_id="t1")
    assert bare.text.startswith("*In this incident's channel:*")
    noted = handler.handle(
        user_id="U1", channel_id="C1", text="note geth restarted", trigger_id="t2"
    )
    assert noted.text == "Noted on the INC-1 timeline."
    elsewhere = handler.handle(
        user_id="U1", channel_id="C2", text="note geth restarted", trigger_id="t3"
    )
    assert "only works in an incident's channel" in elsewhere.text
    with db.read(engine) as s:
        notes = [e.summary for e in svc.timeline(s, svc.get(s, "INC-1")) if e.kind == "note"]
    assert notes == ["geth restarted"]
