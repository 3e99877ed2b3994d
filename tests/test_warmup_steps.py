"""The declare rehearsed before ready: nothing a user could see is left behind on either back
end (no row, no INC number or run number used up), and the first real declare then compiles
nothing: it gets INC-1 and run 1, as if the bot had never rehearsed."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from incidentbot import db, inbound
from incidentbot.incidents.models import Incident
from incidentbot.ledger.actions import registry
from incidentbot.ledger.models import Run
from incidentbot.usecases import incidents as uc
from incidentbot.usecases.core import Actor, Core
from incidentbot.web import warmup, warmup_steps
from incidentbot.web.warmup_steps import LeftTheRehearsal, declare_rehearsal

ALICE = Actor("U_ALICE", "slack")


@pytest.fixture(autouse=True)
def chat_actions() -> None:
    # The declares only queue their runs here (no worker runs them); the actions must be known
    # (the bot registers the real ones, replacing these).
    for name in ("chat.open_channel", "chat.header", "chat.digest", "pager.trigger"):
        if registry.get(name) is None:
            registry.register(name, lambda *_a, **_k: None, idempotent=True)


def _state(engine: Engine) -> dict[str, Any]:
    """Every table's row count and, on PostgreSQL, where every sequence stands."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for name, table in SQLModel.metadata.tables.items():
            out[name] = conn.execute(select(func.count()).select_from(table)).scalar_one()
        if engine.dialect.name == "postgresql":
            for (seq,) in conn.execute(
                text("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()")
            ):
                out[f"sequence {seq}"] = conn.execute(
                    text(f'SELECT last_value, is_called FROM "{seq}"')
                ).one()
    return out


class _Misses:
    """Statements compiled for the first time (SQLAlchemy's compiled cache) by this thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[str] = []
        self.me = threading.get_ident()

    def __enter__(self) -> _Misses:
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "after_cursor_execute", self._after)

    def _after(self, _conn: Any, _cursor: Any, statement: str, *args: Any) -> None:
        context = args[1]
        if threading.get_ident() == self.me and "MISS" in str(context.cache_hit):
            self.seen.append(" ".join(statement.split())[:80])


def test_the_rehearsal_leaves_nothing_and_the_first_declare_compiles_nothing(engine, settings):
    before = _state(engine)
    warmup.mappers()
    warmup.reads(engine)
    declare_rehearsal(engine, settings)
    # Nothing to see: no incident, no claim, no queued run; no number taken from a sequence.
    assert _state(engine) == before

    key = "T0/C1/declare-1"
    with _Misses(engine) as misses, inbound.deferred(key) as claim:
        declared = uc.declare(Core(settings, engine), ALICE, title="RPC node lagging", key=key)
    assert claim.claimed
    assert declared.ref == "INC-1"
    assert misses.seen == []  # every statement of the declare was compiled before
    with db.read(engine) as s:
        assert s.exec(select(Incident.id)).all() == [(declared.incident_id,)]
        assert min(s.exec(select(Run.id)).scalars()) == 1  # run numbers start at 1


def test_rehearsing_twice_leaves_nothing_either(engine, settings):
    before = _state(engine)
    declare_rehearsal(engine, settings)
    declare_rehearsal(engine, settings)
    assert _state(engine) == before


def test_postgresql_whose_search_path_would_reach_the_real_tables_is_not_rehearsed(
    pg_cluster, pg_template, settings
):
    name = f"warmup_path_{os.getpid()}"
    pg_cluster.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    # pg_temp searched after the bot's schema: an unqualified name is the real table.
    engine = db.make_engine(pg_cluster.url(name))

    @event.listens_for(engine, "connect")
    def _path(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cur:
            cur.execute("SET search_path = public, pg_temp")
        dbapi_connection.commit()

    try:
        before = _state(engine)
        with pytest.raises(LeftTheRehearsal, match="do not shadow"):
            declare_rehearsal(engine, settings)
        assert _state(engine) == before
    finally:
        engine.dispose()


def test_a_statement_on_another_connection_during_the_rehearsal_is_refused(engine):
    # What keeps the rehearsal off the real tables if a step it runs ever opened a
    # transaction of its own (on PostgreSQL, its rows would land in the real tables).
    before = _state(engine)
    with engine.connect() as ours, warmup_steps._confined(engine, ours):
        ours.execute(text("SELECT 1"))
        with pytest.raises(LeftTheRehearsal), db.transaction(engine) as s:
            s.add(Incident(number=99, title="not kept", severity="sev2", status="investigating"))
    assert _state(engine) == before
    with db.transaction(engine) as s:  # the guard is gone with the rehearsal
        s.execute(text("SELECT 1"))


def test_a_table_locked_by_a_migration_fails_the_rehearsal_without_waiting_for_it(
    pg_cluster, pg_template, settings, monkeypatch
):
    name = f"warmup_lock_{os.getpid()}"
    pg_cluster.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    engine = db.make_engine(pg_cluster.url(name))
    monkeypatch.setattr(warmup_steps, "LOCK_TIMEOUT", "50ms")
    try:
        before = _state(engine)
        with engine.connect() as migration:
            migration.begin()
            migration.execute(text("LOCK TABLE incident IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(OperationalError, match="lock timeout"):
                declare_rehearsal(engine, settings)
            migration.rollback()
        assert _state(engine) == before
    finally:
        engine.dispose()
