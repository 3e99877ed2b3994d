"""Databases for the backup, restore, upgrade and rollback tests: populated through the CLI and
the ledger, an empty second database on the same back end, and a snapshot of every row."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from incidentbot import db, ledger

CORE_TABLES = [
    "incident",
    "timeline_event",
    "role_assignment",
    "ledger_run",
    "ledger_step",
    "action_item",
]
_names = itertools.count(1)


def populate(cli: Callable[..., tuple[int, str, str]], url: str) -> None:
    """Two incidents with a timeline, an action item, and a finished ledger run."""
    for argv in [
        ("incident", "declare", "RPC p99 above 2s", "--sev", "2", "-f", "chain=ethereum"),
        ("incident", "note", "INC-1", "geth on rpc-2 is 40 blocks behind"),
        ("incident", "assign", "INC-1", "scribe", "carol"),
        ("incident", "resolve", "INC-1", "failed over to rpc-3"),
        ("incident", "declare", "validator missed attestations", "--sev", "3"),
        ("actions", "add", "INC-1", "alert on block lag", "--owner", "carol"),
    ]:
        code, _, err = cli(*argv)
        assert (code, err) == (0, ""), argv
    engine = db.make_engine(url)
    try:
        with db.transaction(engine) as s:
            run = ledger.start_run(
                s,
                kind="test",
                key="populate-1",
                steps=[{"name": "noop", "action": "ledger.noop"}],
                actor="alice",
                target="rpc-2",
                incident_id=1,
            )
            assert run.id is not None
    finally:
        engine.dispose()


def snapshot(url: str, tables: list[str] = CORE_TABLES) -> dict[str, list[dict[str, Any]]]:
    """Every row of ``tables``, in primary key order."""
    engine = db.make_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine, only=tables)
        with engine.connect() as conn:
            found = {
                name: [
                    dict(row._mapping)
                    for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))
                ]
                for name, table in meta.tables.items()
            }
            conn.rollback()
        return found
    finally:
        engine.dispose()


def empty_database_url(request: pytest.FixtureRequest, like: str, tmp_path: Path) -> str:
    """A database with nothing in it, on the same back end as ``like``."""
    if like.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/restored-{next(_names)}.db"
    cluster = request.getfixturevalue("pg_cluster")
    name = f"empty_{os.getpid()}_{next(_names)}"
    cluster.execute(f"CREATE DATABASE {name}")
    return str(cluster.url(name))


def on(
    monkeypatch: pytest.MonkeyPatch, url: str, cli: Callable[..., tuple[int, str, str]]
) -> Callable[..., tuple[int, str, str]]:
    """The ``cli`` fixture, pointed at ``url`` from now on."""
    monkeypatch.setenv("INCIDENTBOT_DATABASE_URL", url)
    return cli
