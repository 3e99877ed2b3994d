"""Engine, sessions and the schema check.

Two kinds of unit of work: :func:`transaction` (may write) and :func:`read` (only reads; it
refuses to flush). On SQLite (the default: WAL mode, a busy timeout, foreign keys on) a
:func:`read` is a deferred transaction on a WAL snapshot, which never takes the write lock and
never waits for a writer. A :func:`transaction` first queues in the process's
:mod:`~incidentbot.writer_queue` (first come, first served) and then starts with
``BEGIN IMMEDIATE``, so that it takes the write lock up front instead of failing half-way with
"database is locked" when two threads upgrade at once; it gives its turn to the next writer
when its connection goes back to the pool, after its commit. PostgreSQL needs nothing special.
Timestamps go through :class:`UTCDateTime`, which stores UTC and always gives back aware
datetimes, on both back ends.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import DateTime, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

from incidentbot import writer_queue

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class SchemaError(Exception):
    """The database schema is missing or not at the version this code expects."""


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every back end; naive values are refused on the way in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give it a time zone")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite has no time zone type: store UTC wall time, put the zone back on read.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> Engine:
    """Create an engine for ``url`` with the pragmas and pool the bot relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=20,
            pool_timeout=60,
        )
        _sqlite_pragmas(engine)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=20,
        pool_pre_ping=True,
        pool_timeout=60,
    )


READ_OPTION = "incidentbot_read"


def _writer_queue_key(engine: Engine) -> str:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return f"{engine.url}#{id(engine)}"
    return str(Path(database).resolve())


def _sqlite_pragmas(engine: Engine) -> None:
    queue = writer_queue.for_database(_writer_queue_key(engine))

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_OPTION):
            conn.exec_driver_sql("BEGIN")  # deferred: a WAL snapshot, no write lock
            return
        if not conn.info.get("writer_turn") and queue.acquire():
            conn.info["writer_turn"] = True
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine.pool, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        # After the commit or rollback: the next writer in the queue may begin.
        if record.info.pop("writer_turn", False):
            queue.release()


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


class ReadSession(Session):
    """A session for :func:`read`: anything it would write is refused."""


@event.listens_for(ReadSession, "before_flush")
def _refuse_writes(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a db.read() session cannot write: use db.transaction()")


_readers: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def _reader(engine: Engine) -> Engine:
    reader = _readers.get(engine)
    if reader is None:
        reader = _readers[engine] = engine.execution_options(**{READ_OPTION: True})
    return reader


@contextmanager
def read(engine: Engine) -> Iterator[Session]:
    """A read-only unit of work: one consistent snapshot, and on SQLite no write lock, so a
    read never waits behind writers (nor holds them up). Objects stay readable afterwards."""
    with ReadSession(_reader(engine), expire_on_commit=False, autoflush=False) as session:
        try:
            yield session
            session.commit()  # nothing to write: ends the snapshot, keeps the objects loaded
        except BaseException:
            session.rollback()
            raise


def db_now(session: Session) -> datetime:
    """The database server's clock (leases are measured on it, not on each worker's clock)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        value = session.execute(text("SELECT clock_timestamp()")).scalar_one()
        return value.astimezone(UTC)
    raw = session.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
    return datetime.fromisoformat(raw).replace(tzinfo=UTC)


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for PostgreSQL and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database)


def redacted(url: str) -> str:
    """The URL as it may be shown: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def require_existing(url: str) -> None:
    """Refuse a SQLite URL whose file does not exist, before opening it would create it."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise SchemaError(
            f"the database {path} does not exist: run `incidentbot db upgrade` to create it"
        )


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
