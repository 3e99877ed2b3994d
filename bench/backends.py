"""The two database back ends every bench measures: a temporary SQLite file and a throwaway
PostgreSQL cluster (tests/pgcluster.py), or a line saying why PostgreSQL was skipped; and
timing one ledger run."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

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
