"""Shared fixtures: settings, and migrated databases on SQLite and on a real PostgreSQL.

Tests that take ``engine`` run twice, once per back end. PostgreSQL comes from a throwaway
cluster started once per session; without server binaries those runs are skipped with a
message, except in CI (``CI`` set), where a missing PostgreSQL fails the suite.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.sandbox.slack.server import SlackSandbox
from tests.pgcluster import PgCluster, PgUnavailable

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]
_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    try:
        cluster = PgCluster()
    except PgUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL: {exc}")
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    try:
        cluster.start()
    except Exception as exc:
        cluster.stop()
        pytest.fail(f"could not start a throwaway PostgreSQL cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PgCluster) -> str:
    """A migrated database that each test clones (much faster than migrating each time)."""
    pg_cluster.execute("CREATE DATABASE incidentbot_template")
    engine = db.make_engine(pg_cluster.url("incidentbot_template"))
    db.upgrade(engine)
    engine.dispose()
    return "incidentbot_template"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "incidentbot.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    engine.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated, empty database URL on each back end."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "incidentbot.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    template_name: str = request.getfixturevalue("pg_template")
    name = f"test_{os.getpid()}_{next(_db_counter)}"
    cluster.execute(f"CREATE DATABASE {name} TEMPLATE {template_name}")
    return cluster.url(name)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def backend(engine: Engine) -> str:
    return engine.dialect.name


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):  # type: ignore[no-untyped-def]
    """The CLI in-process on a fresh database: ``code, out, err = cli("incident", ...)``."""
    from incidentbot.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INCIDENTBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("INCIDENTBOT_ACTOR", "alice")
    monkeypatch.delenv("INCIDENTBOT_CONFIG", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.fixture
def slack_sandbox() -> Iterator[SlackSandbox]:
    """A fresh local Slack server (no bot attached): tests point a bot of their own at it."""
    sandbox = SlackSandbox().start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    """The ledger harness's side-effect server: counts what each step really did."""
    from tests.ledger_harness import EffectServer  # registers the harness's action

    srv = EffectServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def pools(engine: Engine):  # type: ignore[no-untyped-def]
    """``pools()`` starts a pool of two ledger worker threads; held harness actions are
    released and every pool stopped when the test ends."""
    from incidentbot import ledger
    from tests.ledger_harness import RELEASE

    started: list[ledger.WorkerPool] = []

    def make() -> ledger.WorkerPool:
        pool = ledger.WorkerPool(engine, threads=2, lease=5.0, poll=0.05).start()
        started.append(pool)
        return pool

    RELEASE.clear()
    yield make
    RELEASE.set()
    for pool in started:
        pool.stop(timeout=10)
