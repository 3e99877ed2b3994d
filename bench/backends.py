"""The two database back ends every bench measures: a temporary SQLite file and a throwaway
PostgreSQL cluster (tests/pgcluster.py), or a line saying why PostgreSQL was skipped; fresh
databases for benchmarks that start every repeat from the same state; and timing one ledger
run."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from incidentbot import db, ledger
from tests.pgcluster import PgCluster, PgUnavailable


def each_backend(measure: Callable[[str, str], None]) -> None:
    """Call ``measure(name, url)`` on SQLite, then on PostgreSQL when its binaries exist."""
    with tempfile.TemporaryDirectory() as tmp:
        measure("SQLite", f"sqlite:///{tmp}/bench.db")
    try:
        cluster = PgCluster()
    except PgUnavailable as exc:
        print(f"PostgreSQL  skipped: {exc}")
        return
    try:
        cluster.start()
        cluster.execute("CREATE DATABASE bench")
        measure("PostgreSQL", cluster.url("bench"))
    finally:
        cluster.stop()


def drive(engine: Engine, run_id: int) -> float:
    """Seconds one worker takes to drive run ``run_id`` from start to end; exits the bench
    when the run did not succeed (a figure of a failed run would be meaningless)."""
    worker = ledger.Worker(engine, name="bench", lease=30)
    try:
        began = time.perf_counter()
        assert worker.run_once()
        elapsed = time.perf_counter() - began
    finally:
        worker.close()
    with db.transaction(engine) as s:
        status = ledger.get_run(s, run_id).status
    if status != "succeeded":
        raise SystemExit(f"bench run {run_id} ended {status}")
    return elapsed


@contextmanager
def fresh_databases() -> Iterator[Callable[[str], tuple[str, str]]]:
    """Yield ``fresh(name)`` -> (back end label, URL of a new empty database); PostgreSQL is a
    throwaway cluster with durable settings (fsync and synchronous commit on)."""
    tmp = tempfile.TemporaryDirectory()
    cluster: PgCluster | None = None
    try:
        cluster = PgCluster(durable=True).start()
    except PgUnavailable as exc:
        print(f"   PostgreSQL skipped: {exc}")
    made = iter(range(1_000_000))

    def fresh(backend: str) -> tuple[str, str]:
        n = next(made)
        if backend == "sqlite":
            return "SQLite", f"sqlite:///{tmp.name}/bench{n}.db"
        assert cluster is not None
        cluster.execute(f"CREATE DATABASE bench{n}")
        return "PostgreSQL (fsync on)", cluster.url(f"bench{n}")

    fresh.backends = ["sqlite"] + (["postgresql"] if cluster else [])  # type: ignore[attr-defined]
    try:
        yield fresh
    finally:
        if cluster is not None:
            cluster.stop()
        tmp.cleanup()


def count(url: str, sql: str) -> int:
    """One number from the database (what a benchmark counts as stored)."""
    engine = db.make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()
