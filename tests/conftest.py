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
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.sandbox.slack.server import SlackSandbox
from tests import consensus_support, file_costs
from tests.consensus_support import consensus_lab  # noqa: F401 - one devnet for the session
from tests.pgcluster import PgCluster, PgUnavailable

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]
_db_counter = itertools.count(1)


def _shares_the_devnet(item: pytest.Item | None) -> bool:
    return item is not None and item.path.name in consensus_support.FILES


def _unit(item: pytest.Item) -> str:
    """The unit ``--dist loadfile`` hands to one process: the file, or the consensus lab."""
    return consensus_support.SCOPE if _shares_the_devnet(item) else str(item.path)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-file-costs",
        action="store_true",
        help="update tests/file_costs.json with what each test file that ran took (run whole "
        "files, in the suite's processes: the figures order the files, longest first)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("record_file_costs") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(file_costs.Recorder(), "file-costs-recorder")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The test files of the consensus lab run next to each other, in the order of
    ``consensus_support.FILES`` (also in a run without xdist): one devnet serves them all.
    In the processes of a parallel run the files (the lab's as one) are collected longest first,
    the order in which ``--dist loadfile`` hands them out (``tests/file_costs.py``)."""
    shared = [item for item in items if _shares_the_devnet(item)]
    if shared:
        first = items.index(shared[0])  # no such item before it: the same index in ``rest``
        shared.sort(key=lambda item: consensus_support.FILES.index(item.path.name))  # stable
        rest = [item for item in items if not _shares_the_devnet(item)]
        items[:] = rest[:first] + shared + rest[first:]
    if hasattr(config, "workerinput"):  # an xdist process (its ``dist`` option reads "no")
        file_costs.order_longest_first(items, _unit, file_costs.load())


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (scripts/test) with the consensus lab's files as one file: they go
    to one process, which starts one devnet for them. The files are handed out in the order
    collected (longest first, see ``pytest_collection_modifyitems``), not xdist's order by
    number of tests. Other modes are xdist's own. (Not ``--dist loadgroup`` with
    ``xdist_group`` marks: pytest-xdist 3.8 groups by renaming ``item._nodeid``, which pytest 9
    no longer reads, so every test would be spread alone.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False  # the collection's order: longest first

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return consensus_support.SCOPE if Path(file).name in consensus_support.FILES else file

    return Scheduling(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """The devnet goes down after the last test that may use it (once that test's own
    fixtures are torn down), not at the end of the session: it would keep two Lodestar
    processes busy under the tests that follow."""
    yield
    if _shares_the_devnet(item) and not _shares_the_devnet(nextitem):
        consensus_support.bring_down()


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
    from tests.slack_harness import PATIENT_ACK_S

    sandbox = SlackSandbox(ack_timeout=PATIENT_ACK_S).start()
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
