"""Backups of the database, and restoring them.

SQLite goes through SQLite's online backup API: one consistent snapshot (WAL included) taken
while the bot keeps writing, written as one self-contained file. PostgreSQL goes through
``pg_dump -Fc`` and ``pg_restore``, run with the connection in libpq's environment variables
(never on a command line, where ``ps`` would show the password). A backup is written next to
its destination and renamed into place, so a failed backup leaves no half-written file.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from incidentbot import db

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
_LIBPQ_QUERY = {
    "host": "PGHOST",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
}


class BackupError(Exception):
    """A backup or restore refused or failed; the message says why and changes nothing."""


@dataclass(frozen=True)
class Summary:
    revision: str | None
    incidents: int

    def describe(self) -> str:
        plural = "" if self.incidents == 1 else "s"
        return f"schema revision {self.revision or 'none'}, {self.incidents} incident{plural}"


# -- shared ------------------------------------------------------------------------------------


def _check_destination(dest: Path, force: bool) -> None:
    if not dest.parent.is_dir():
        raise BackupError(f"the directory {dest.parent} does not exist: create it first")
    if dest.is_dir():
        raise BackupError(f"{dest} is a directory: name the backup file")
    if dest.exists() and not force:
        raise BackupError(f"{dest} already exists: choose another name, or pass --force")


def _check_known(revision: str | None, source: Path) -> None:
    if revision is None:
        raise BackupError(f"{source} is not an incidentbot backup: it has no schema revision")
    if revision not in db.known_revisions():
        raise BackupError(
            f"{source} was made by a newer incidentbot (schema revision {revision}; this one "
            f"knows up to {db.head_revision()}): restore it with that version or newer"
        )


def _kind(source: Path) -> str:
    if not source.is_file():
        raise BackupError(f"{source} does not exist")
    with source.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "postgresql"
    raise BackupError(f"{source} is not an incidentbot backup (neither SQLite nor pg_dump -Fc)")


def summarize(engine: Engine) -> Summary:
    """The schema revision and the number of incidents in a database."""
    revision = db.current_revision(engine)
    incidents = 0
    with engine.connect() as conn:
        if sa.inspect(conn).has_table("incident"):
            count = sa.select(sa.func.count()).select_from(sa.table("incident"))
            incidents = int(conn.execute(count).scalar_one())
        conn.rollback()
    return Summary(revision, incidents)


def backup(url: str, dest: Path, *, force: bool = False) -> Summary:
    """Write a backup of the database at ``url`` to ``dest``; say what it holds."""
    _check_destination(dest, force)
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        if db.sqlite_path(url) is not None:
            summary = _sqlite_backup(url, partial)
        elif make_url(url).get_backend_name() == "postgresql":
            summary = _pg_backup(url, partial)
        else:
            raise BackupError(f"cannot back up {_where(url)}: only SQLite files and PostgreSQL")
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    log.info("backed up %s to %s: %s", _where(url), dest, summary.describe())
    return summary


def restore(url: str, source: Path, *, force: bool = False) -> Summary:
    """Restore ``source`` into the database at ``url``; refuse a non-empty database unless
    ``force``, and a backup made by a newer schema."""
    kind = _kind(source)
    path = db.sqlite_path(url)
    backend = "sqlite" if path is not None else make_url(url).get_backend_name()
    if kind != backend:
        raise BackupError(f"{source} is a {kind} backup; the database {_where(url)} is {backend}")
    summary = _sqlite_restore(url, source, force) if path else _pg_restore(url, source, force)
    log.info("restored %s into %s: %s", source, _where(url), summary.describe())
    return summary


def _where(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _non_empty(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        tables = sa.inspect(conn).get_table_names()
        conn.rollback()
    return tables


def _refuse_non_empty(url: str, tables: list[str], force: bool) -> None:
    if tables and not force:
        raise BackupError(
            f"the database {_where(url)} is not empty ({len(tables)} tables): restoring would "
            "replace everything in it; pass --force to go ahead"
        )


# -- SQLite ------------------------------------------------------------------------------------


def _sqlite_summary(conn: sqlite3.Connection) -> Summary:
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    revision = None
    if "alembic_version" in names:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = row[0] if row else None
    incidents = 0
    if "incident" in names:
        incidents = int(conn.execute("SELECT count(*) FROM incident").fetchone()[0])
    return Summary(revision, incidents)


def _sqlite_backup(url: str, partial: Path) -> Summary:
    path = db.sqlite_path(url)
    assert path is not None
    if not path.is_file():
        raise BackupError(f"the database {path} does not exist")
    src = sqlite3.connect(path, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # every page in one step: one consistent snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the backup of {path} failed its integrity check: {check}")
            return _sqlite_summary(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _sqlite_restore(url: str, source: Path, force: bool) -> Summary:
    path = db.sqlite_path(url)
    assert path is not None
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    try:
        summary = _sqlite_summary(src)
        _check_known(summary.revision, source)
        if not path.parent.is_dir():
            raise BackupError(f"the directory {path.parent} does not exist: create it first")
        if path.exists():
            engine = db.make_engine(url)
            try:
                _refuse_non_empty(url, _non_empty(engine), force)
            finally:
                engine.dispose()
        dst = sqlite3.connect(path, timeout=30)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    engine = db.make_engine(url)
    try:
        return summarize(engine)
    finally:
        engine.dispose()


# -- PostgreSQL --------------------------------------------------------------------------------


def pg_tool(name: str) -> Path:
    """``pg_dump`` or ``pg_restore``: the newest installed server version's, else on PATH."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: _version(Path(p)))
    for bindir in reversed(dirs):
        if (Path(bindir) / name).is_file():
            return Path(bindir) / name
    found = shutil.which(name)
    if found:
        return Path(found)
    raise BackupError(
        f"{name} not found: install the PostgreSQL client tools (Debian: apt-get install "
        f"postgresql-client) or put {name} on PATH"
    )


def _version(bindir: Path) -> int:
    try:
        return int(bindir.parent.name)
    except ValueError:
        return 0


def _libpq_env(url: URL) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in {
        "PGHOST": url.host,
        "PGPORT": str(url.port) if url.port else None,
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.database,
    }.items():
        if value:
            env[key] = str(value)
    for key, value in url.query.items():
        if key in _LIBPQ_QUERY:
            env[_LIBPQ_QUERY[key]] = value if isinstance(value, str) else value[0]
    return env


def _run(args: list[str], url: URL) -> str:
    proc = subprocess.run(args, env=_libpq_env(url), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        detail = lines[0] if lines else f"exit status {proc.returncode}"
        raise BackupError(f"{Path(args[0]).name} failed: {detail}")
    return proc.stdout


def _pg_backup(url: str, partial: Path) -> Summary:
    tool = str(pg_tool("pg_dump"))
    engine = db.make_engine(url, pool_size=1)
    try:
        conn = engine.connect().execution_options(isolation_level="REPEATABLE READ")
        with conn, conn.begin():
            # pg_dump reads the snapshot this transaction exported: the summary counts
            # exactly what the backup holds.
            snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
            revision = db.current_revision_on(conn)
            incidents = 0
            if sa.inspect(conn).has_table("incident"):
                count = sa.select(sa.func.count()).select_from(sa.table("incident"))
                incidents = int(conn.execute(count).scalar_one())
            _run([tool, "-Fc", f"--snapshot={snapshot}", "-f", str(partial)], engine.url)
    finally:
        engine.dispose()
    return Summary(revision, incidents)


def _dump_revision(tool: str, source: Path, url: URL) -> str | None:
    script = _run([tool, "--data-only", "--table=alembic_version", "-f", "-", str(source)], url)
    lines = script.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("COPY ") and "alembic_version" in line and i + 1 < len(lines):
            value = lines[i + 1].strip()
            return None if value == "\\." else value
    return None


def _pg_restore(url: str, source: Path, force: bool) -> Summary:
    tool = str(pg_tool("pg_restore"))
    parsed = make_url(url)
    _check_known(_dump_revision(tool, source, parsed), source)
    engine = db.make_engine(url, pool_size=1)
    try:
        tables = _non_empty(engine)
        _refuse_non_empty(url, tables, force)
        if tables:
            _pg_clear(engine, tables)
        _run(
            [tool, "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
             "-d", parsed.database or "postgres", str(source)],
            parsed,
        )  # fmt: skip
        return summarize(engine)
    finally:
        engine.dispose()


def _pg_clear(engine: Engine, tables: list[str]) -> None:
    """Drop what a restore replaces: the tables and functions of the public schema."""
    with engine.begin() as conn:
        for table in tables:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {_quote(engine, table)} CASCADE"))
        functions = conn.execute(
            sa.text(
                "SELECT p.oid::regprocedure::text FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = current_schema() AND p.prokind = 'f'"
            )
        ).scalars()
        for function in list(functions):
            conn.execute(sa.text(f"DROP FUNCTION IF EXISTS {function} CASCADE"))


def _quote(engine: Engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote(name)
