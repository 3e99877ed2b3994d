"""Engine, sessions and the schema check.

Two kinds of unit of work: :func:`transaction` (may write) and :func:`read` (only reads; it
refuses to flush). On SQLite (the default: WAL mode, a busy timeout, foreign keys on) a
:func:`read` is a deferred transaction on a WAL snapshot, which never takes the write lock and
never waits for a writer. A :func:`transaction` first queues in the process's
:mod:`~incidentbot.writer_queue` (first come, first served) and then starts with
``BEGIN IMMEDIATE``, so that it takes the write lock up front instead of failing half-way with
"database is locked" when two threads upgrade at once; it gives its turn to the next writer
when its connection goes back to the pool, after its commit. On PostgreSQL a :func:`read` runs
in autocommit (no BEGIN and COMMIT round trips), and a transaction needs nothing special.
Timestamps go through :class:`UTCDateTime`, which stores UTC and always gives back aware
datetimes, on both back ends.
"""

from __future__ import annotations

import logging
import select
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, event, exc, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

from incidentbot import group_commit, writer_queue

T = TypeVar("T")

log = logging.getLogger(__name__)


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


def make_engine(
    url: str, *, echo: bool = False, pool_size: int = 10, grouped: bool | None = None
) -> Engine:
    """Create an engine for ``url`` with the pragmas and pool the bot relies on. ``grouped``:
    commit write transactions in groups (:mod:`~incidentbot.group_commit`); by default on
    SQLite, where writers take turns anyway, and not on PostgreSQL, which runs writers side
    by side and already shares one WAL flush among the commits that arrive together."""
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
        queue = writer_queue.for_database(_writer_queue_key(engine))
        _sqlite_pragmas(engine, queue)
        # (An in-memory database is one per connection: never grouped.)
        if grouped is not False and sqlite_path(url) is not None:
            _groups[engine] = group_commit.GroupCommitter(queue)
        _driver_savepoints(engine)
        return engine
    engine = create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        # Every request thread (40 in a burst) may hold a connection while the writers wait
        # for their turn, with the ledger workers' on top.
        max_overflow=PG_OVERFLOW,
        pool_timeout=60,
        # Instead of a ping per checkout (a round trip per transaction): see _pg_liveness.
        pool_recycle=PG_RECYCLE_S,
    )
    _pg_liveness(engine)
    _driver_savepoints(engine)
    if grouped:
        _groups[engine] = group_commit.GroupCommitter(writer_queue.WriterQueue(redacted(url)))
    return engine


def _driver_savepoints(engine: Engine) -> None:
    """``SAVEPOINT`` and ``RELEASE SAVEPOINT`` sent as driver text: SQLAlchemy compiles the
    statement anew each time (its name changes, so it is never cached), and every grouped write
    transaction (:mod:`~incidentbot.group_commit`) makes both."""
    dialect = engine.dialect
    quote = dialect.identifier_preparer.quote

    def savepoint(connection: Any, name: str) -> None:
        connection.exec_driver_sql(f"SAVEPOINT {quote(name)}")

    def release(connection: Any, name: str) -> None:
        connection.exec_driver_sql(f"RELEASE SAVEPOINT {quote(name)}")

    dialect.do_savepoint = savepoint  # type: ignore[method-assign]
    dialect.do_release_savepoint = release  # type: ignore[method-assign]


PG_OVERFLOW = 50
PG_RECYCLE_S = 3600  # a pooled PostgreSQL connection is replaced after an hour
PG_PING_IDLE_S = 30.0  # one idle in the pool this long is pinged before it is used


def _socket_closed(dbapi_connection: Any) -> bool:
    """Whether the server has hung up on an idle connection, without a round trip: a pooled
    connection has nothing to read unless the server closed it (a restart, a terminated
    backend, ``idle_session_timeout``), so a readable socket means a dead connection."""
    if getattr(dbapi_connection, "closed", False):
        return True
    try:
        fd = dbapi_connection.fileno()
    except Exception:  # a closed or broken connection
        return True
    poller = select.poll()  # not select(): a busy process may have descriptors past 1024
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def _pg_liveness(engine: Engine) -> None:
    """Hand out only live PostgreSQL connections, without a round trip in a burst.

    On checkout, a connection whose server hung up (its socket readable) is replaced; one idle
    longer than ``PG_PING_IDLE_S`` is pinged first, as ``pool_pre_ping`` would (a connection
    cut without a word, by a firewall, shows nothing on its socket). A connection that breaks
    under a statement is detected by SQLAlchemy, which replaces the pool's older connections
    too."""

    @event.listens_for(engine.pool, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None:  # a new connection
            return
        if _socket_closed(dbapi_connection):
            # This one only: each pooled connection is checked like it at its own checkout,
            # without a round trip, so nothing is gained by dropping the others unchecked.
            raise exc.DisconnectionError("the server closed the connection")
        if time.monotonic() - since >= PG_PING_IDLE_S:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as err:
                raise exc.InvalidatePoolError(f"ping failed: {err}") from err


# The engines made by make_engine commit their write transactions in groups.
_groups: weakref.WeakKeyDictionary[Engine, group_commit.GroupCommitter] = (
    weakref.WeakKeyDictionary()
)


def writers(engine: Engine) -> group_commit.GroupCommitter | None:
    """The group committer of ``engine``'s write transactions (None: each commits alone)."""
    return _groups.get(engine)


READ_OPTION = "incidentbot_read"


def _writer_queue_key(engine: Engine) -> str:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return f"{engine.url}#{id(engine)}"
    return str(Path(database).resolve())


def _sqlite_pragmas(engine: Engine, queue: writer_queue.WriterQueue) -> None:
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
        options = conn.get_execution_options()
        if options.get(READ_OPTION):
            conn.exec_driver_sql("BEGIN")  # deferred: a WAL snapshot, no write lock
            return
        if options.get(group_commit.GROUP_OPTION):  # its members hold their turns
            conn.exec_driver_sql("BEGIN IMMEDIATE")
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
    """One unit of work: commit on success, roll back on any exception. It returns once its
    work is committed (in a group with other writers' work, see :mod:`~incidentbot.group_commit`:
    its own savepoint, so its failure undoes only its own work)."""
    group = _groups.get(engine)
    if group is not None and not group.inside():
        with group.transaction(engine) as session:
            yield session
        return
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
        options: dict[str, Any] = {READ_OPTION: True}
        if engine.dialect.name == "postgresql":
            # At READ COMMITTED (the default) each statement of a transaction reads its own
            # snapshot anyway, so a read in autocommit sees what it would see in a transaction,
            # without the BEGIN and COMMIT round trips.
            options["isolation_level"] = "AUTOCOMMIT"
        reader = _readers[engine] = engine.execution_options(**options)
    return reader


def reader(engine: Engine) -> Engine:
    """The engine :func:`read` sessions run on, for a lone read statement on a connection of
    its own (no session): on SQLite a deferred transaction, on PostgreSQL autocommit."""
    return _reader(engine)


def detached(cls: type[T], row: Any) -> T:
    """A detached instance of the mapped class ``cls`` holding ``row`` (every column, as the
    database returned them), built as the ORM builds a loaded object: without a session's
    load, and without ``cls(**row)``, which validates and sets each column through its
    instrumentation (several times the cost of a one-row statement)."""
    obj: T = cls.__mapper__.class_manager.new_instance()  # type: ignore[attr-defined]
    obj.__dict__.update(row)
    make_transient_to_detached(obj)
    return obj


@contextmanager
def read(engine: Engine) -> Iterator[Session]:
    """A read-only unit of work: on SQLite one consistent snapshot and no write lock, so a
    read never waits behind writers (nor holds them up); on PostgreSQL statements in
    autocommit, each on its own snapshot as in a READ COMMITTED transaction. Objects stay
    readable afterwards."""
    with ReadSession(_reader(engine), expire_on_commit=False, autoflush=False) as session:
        try:
            yield session
            session.commit()  # nothing to write: ends the snapshot, keeps the objects loaded
        except BaseException:
            session.rollback()
            raise


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """:func:`read` as a Core connection, without a session: for a statement or two on a
    request's path (a session's begin and commit cost more than the indexed read itself)."""
    with _reader(engine).connect() as conn:
        try:
            yield conn
        finally:
            conn.rollback()  # nothing written: ends the snapshot


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


# The schema's versions and migrations, at home in db_schema; named here as they always were.
from incidentbot.db_schema import (  # noqa: E402
    MIGRATIONS_DIR,
    SchemaError,
    alembic_config,
    check_not_newer,
    check_schema,
    current_revision,
    current_revision_on,
    downgrade,
    downgrade_losses,
    downgrade_target,
    head_revision,
    known_revisions,
    newer_message,
    script_directory,
    upgrade,
)

__all__ = [
    "MIGRATIONS_DIR",
    "SchemaError",
    "alembic_config",
    "check_not_newer",
    "check_schema",
    "current_revision",
    "current_revision_on",
    "downgrade",
    "downgrade_losses",
    "downgrade_target",
    "head_revision",
    "known_revisions",
    "newer_message",
    "script_directory",
    "upgrade",
]
