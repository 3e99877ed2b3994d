"""The two database back ends every bench measures: a temporary SQLite file and a throwaway
PostgreSQL cluster (tests/pgcluster.py), or a line saying why PostgreSQL was skipped."""

from __future__ import annotations

import tempfile
from collections.abc import Callable

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
