"""The schema's versions: which revision a database is at, what this incidentbot knows,
upgrades and downgrades (Alembic, imported only by the commands that migrate). Reached as
``incidentbot.db.upgrade`` and so on."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class SchemaError(Exception):
    """The database schema is missing or not at the version this code expects."""


def alembic_config(url: str) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://"))


_REVISION = re.compile(
    r"^(down_revision|revision)\s*(?::[^=\n]*)?=\s*[\"']([^\"']+)[\"']", re.MULTILINE
)


@cache
def _migration_graph() -> dict[str, str | None]:
    """revision -> down revision, read from the migration files without importing alembic
    (every command checks the schema; only ``db`` commands need alembic itself)."""
    graph: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        found = {m.group(1): m.group(2) for m in _REVISION.finditer(source)}
        if "revision" in found:
            graph[found["revision"]] = found.get("down_revision")
    return graph


def head_revision() -> str | None:
    """The newest revision this incidentbot knows."""
    graph = _migration_graph()
    heads = set(graph) - {down for down in graph.values() if down}
    return max(heads) if heads else None


def known_revisions() -> set[str]:
    """Every revision this incidentbot knows (its migrations)."""
    return set(_migration_graph())


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision (None before ``db upgrade``)."""
    with engine.connect() as conn:
        revision = current_revision_on(conn)
        conn.rollback()
        return revision


def current_revision_on(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations on ``engine``; return (before, after) revisions."""
    from alembic import command

    before = current_revision(engine)
    check_not_newer(engine, before)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return before, current_revision(engine)


def newer_message(where: str, revision: str) -> str:
    return (
        f"the database at {where} is at revision {revision}, newer than this incidentbot "
        f"(knows up to {head_revision()}): upgrade incidentbot, or restore the backup taken "
        "before the upgrade"
    )


def check_not_newer(engine: Engine, current: str | None) -> None:
    """Refuse a database migrated by a newer incidentbot: this one must not touch it."""
    if current is not None and current not in known_revisions():
        where = engine.url.render_as_string(hide_password=True)
        raise SchemaError(newer_message(where, current))


def check_schema(engine: Engine) -> None:
    """Refuse to run on a database whose schema is not at head, saying what to run."""
    current = current_revision(engine)
    head = head_revision()
    where = engine.url.render_as_string(hide_password=True)
    if current is None:
        raise SchemaError(
            f"the database at {where} has no incidentbot schema yet: run `incidentbot db upgrade`"
        )
    if current != head:
        check_not_newer(engine, current)
        raise SchemaError(
            f"the database at {where} is at revision {current}, this incidentbot needs {head}: "
            "run `incidentbot db upgrade`"
        )


def downgrade_target(engine: Engine, revision: str | None = None) -> tuple[str, str | None]:
    """(current, target) for a downgrade to ``revision`` (default: one step back)."""
    current = current_revision(engine)
    where = engine.url.render_as_string(hide_password=True)
    if current is None:
        raise SchemaError(f"the database at {where} has no incidentbot schema: nothing to undo")
    check_not_newer(engine, current)
    graph = _migration_graph()
    older: list[str] = []
    step = graph[current]
    while step is not None:
        older.append(step)
        step = graph.get(step)
    if revision is None:
        return current, graph[current]
    if revision == "base":
        return current, None
    if revision not in older:
        allowed = ", ".join(older) or "none"
        raise SchemaError(
            f"cannot downgrade {where} from {current} to {revision!r}: "
            f"the revisions before {current} are {allowed} (or base)"
        )
    return current, revision


def _layout(conn: Any) -> dict[str, set[str]]:
    found = inspect(conn)
    return {
        table: {column["name"] for column in found.get_columns(table)}
        for table in found.get_table_names()
        if table != "alembic_version"
    }


def _alembic_downgrade(conn: Any, target: str | None) -> None:
    from alembic import command

    cfg = alembic_config(conn.engine.url.render_as_string(hide_password=False))
    cfg.attributes["connection"] = conn
    command.downgrade(cfg, target or "base")


def downgrade_losses(engine: Engine, target: str | None) -> list[str]:
    """What a downgrade to ``target`` would delete: tables and columns it drops that hold data.

    The downgrade is run once inside a transaction that is rolled back (both back ends undo
    schema changes on rollback), to see what it drops."""
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            before = _layout(conn)
            _alembic_downgrade(conn, target)
            after = _layout(conn)
        finally:
            trans.rollback()
        losses: list[str] = []
        for table, columns in sorted(before.items()):
            rows_of = sa.select(sa.func.count()).select_from(sa.table(table))
            if table not in after:
                rows = conn.execute(rows_of).scalar_one()
                if rows:
                    losses.append(f"table {table} ({_rows(rows)})")
                continue
            for column in sorted(columns - after[table]):
                rows = conn.execute(rows_of.where(sa.column(column).is_not(None))).scalar_one()
                if rows:
                    losses.append(f"column {table}.{column} ({_rows(rows)} with a value)")
        conn.rollback()
    return losses


def downgrade(engine: Engine, target: str | None) -> tuple[str | None, str | None]:
    """Undo migrations down to ``target`` (None: no schema at all); return (before, after)."""
    before = current_revision(engine)
    with engine.begin() as conn:
        _alembic_downgrade(conn, target)
    return before, current_revision(engine)


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"
