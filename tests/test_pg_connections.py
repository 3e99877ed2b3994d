"""PostgreSQL connections without a ping per transaction: a burst of commands sends no ping,
a restarted server does not fail the next command (nor a read), a connection idle long enough
is pinged before it is used, and a read holds no transaction open."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.ledger.actions import registry
from incidentbot.usecases import incidents as uc
from incidentbot.usecases.core import Actor, Core
from tests.conftest import count
from tests.pgcluster import PgCluster

pytestmark = pytest.mark.postgres

ALICE = Actor("alice", "cli")
_names = itertools.count(1)


@pytest.fixture(autouse=True)
def chat_actions() -> None:
    for name in ("chat.open_channel", "chat.header", "chat.digest"):
        if registry.get(name) is None:
            registry.register(name, lambda *_a, **_k: None, idempotent=True)


@pytest.fixture
def pg(pg_cluster: PgCluster, pg_template: str) -> Iterator[tuple[PgCluster, Engine]]:
    name = f"conn_{os.getpid()}_{next(_names)}"
    pg_cluster.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    engine = db.make_engine(pg_cluster.url(name))
    try:
        yield pg_cluster, engine
    finally:
        engine.dispose()


@pytest.fixture
def pings(pg: tuple[PgCluster, Engine], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every ping the engine sends before handing out a connection."""
    _, engine = pg
    sent: list[int] = []
    real = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        sent.append(1)
        return real(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return sent


def test_commands_in_a_row_send_no_ping(pg, pings, tmp_path):
    _, engine = pg
    core = Core(Settings(data_dir=tmp_path / "data"), engine)
    for i in range(5):
        uc.declare(core, ALICE, title=f"sequencer {i} stalled")
        with db.read(engine) as s:
            assert s.connection() is not None
    assert count(engine, "incident") == 5
    assert pings == []  # pooled connections reused without a round trip first


def test_a_restarted_postgresql_does_not_fail_the_next_command(pg, pings, tmp_path):
    cluster, engine = pg
    settings = Settings(data_dir=tmp_path / "data")
    core = Core(settings, engine)
    assert uc.declare(core, ALICE, title="before the restart").ref == "INC-1"
    with db.read(engine) as s:  # a second pooled connection, for the read after the restart
        assert s.connection() is not None
    cluster.restart()
    assert uc.declare(core, ALICE, title="after the restart").ref == "INC-2"
    with db.read(engine) as s:
        assert [i.title for i in uc.svc.list_incidents(s, settings)] == [
            "after the restart",
            "before the restart",
        ]
    assert pings == []  # the dead connections were seen on their sockets, not by a ping


def test_a_connection_idle_for_long_is_pinged_first(pg, pings, tmp_path, monkeypatch):
    _, engine = pg
    core = Core(Settings(data_dir=tmp_path / "data"), engine)
    uc.declare(core, ALICE, title="first")
    monkeypatch.setattr(db, "PG_PING_IDLE_S", 0.0)  # every pooled connection counts as idle
    uc.declare(core, ALICE, title="second")
    assert len(pings) >= 1 and count(engine, "incident") == 2


def test_a_read_holds_no_transaction_open(pg, tmp_path):
    """A read's statements run in autocommit: between them the server holds no transaction
    (no BEGIN or COMMIT round trips, no snapshot kept while the request works)."""
    _, engine = pg
    settings = Settings(data_dir=tmp_path / "data")
    uc.declare(Core(settings, engine), ALICE, title="RPC lagging")
    with db.read(engine) as s:
        titles = [i.title for i in uc.svc.list_incidents(s, settings)]
        raw = s.connection().connection.dbapi_connection
        assert raw.info.transaction_status == TransactionStatus.IDLE
    assert titles == ["RPC lagging"]
    with db.transaction(engine) as s:  # a write transaction is one, as before
        uc.svc.get(s, "INC-1")
        raw = s.connection().connection.dbapi_connection
        assert raw.info.transaction_status == TransactionStatus.INTRANS
