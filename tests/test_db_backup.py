"""``db backup`` and ``db restore`` as an operator runs them, on SQLite and PostgreSQL: a round
trip of a populated database, a backup taken while another process keeps writing, and the
refusals that change nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from incidentbot import db
from incidentbot.cli import main
from tests.conftest import count
from tests.db_support import empty_database_url, on, populate, snapshot

WRITER = """
import sys
from pathlib import Path
from incidentbot import db
from incidentbot.cli import main
from incidentbot.config import Settings
from incidentbot.incidents import service as svc

engine = db.make_engine(sys.argv[1])
settings = Settings(data_dir=Path(sys.argv[2]))
stop = Path(sys.argv[3])
written = 0
while not stop.exists():
    with db.transaction(engine) as s:
        svc.declare(s, settings, title=f"written {written}", severity="3", actor="writer")
    written += 1
    print(written, flush=True)
engine.dispose()
"""


def test_round_trip_of_a_populated_database(cli, database_url, request, tmp_path, monkeypatch):
    populate(cli, database_url)
    before = snapshot(database_url)
    backup = tmp_path / "incidentbot.backup"

    code, out, err = cli("db", "backup", str(backup))
    assert (code, err) == (0, "")
    rev = db.head_revision()
    assert out.strip().endswith(f"to {backup}: schema revision {rev}, 2 incidents")

    target = empty_database_url(request, database_url, tmp_path)
    code, out, err = on(monkeypatch, target, cli)("db", "restore", str(backup))
    assert (code, err) == (0, "")
    assert f"Restored {backup} into " in out
    assert out.strip().endswith(f"schema revision {rev}, 2 incidents")
    assert snapshot(target) == before
    code, out, _ = on(monkeypatch, target, cli)("timeline", "INC-1")
    assert code == 0 and "Resolved: failed over to rpc-3" in out


def test_a_backup_taken_while_another_process_writes_is_consistent(
    cli, database_url, request, tmp_path, monkeypatch
):
    stop = tmp_path / "stop-writing"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, database_url, str(tmp_path / "data"), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    try:
        for _ in range(5):  # the writer is committing incidents
            assert writer.stdout.readline(), "the writer died"
        written_before = count_committed(database_url)
        code, out, err = cli("db", "backup", str(tmp_path / "live.backup"))
        assert (code, err) == (0, "")
        written_after = count_committed(database_url)
        for _ in range(5):  # and it goes on writing after the backup, unhindered
            assert writer.stdout.readline(), "the writer died"
    finally:
        stop.touch()
        assert writer.wait(timeout=120) == 0
    in_backup = int(out.strip().rsplit(", ", 1)[1].split()[0])
    assert written_before <= in_backup <= written_after

    target = empty_database_url(request, database_url, tmp_path)
    code, out, err = on(monkeypatch, target, cli)("db", "restore", str(tmp_path / "live.backup"))
    assert (code, err) == (0, "")
    engine = db.make_engine(target)
    try:
        # Each declaration is one transaction: the backup holds each incident with its events.
        assert count(engine, "incident") == in_backup
        with engine.connect() as conn:
            declared = conn.exec_driver_sql(
                "SELECT count(*) FROM timeline_event WHERE kind = 'incident.declared'"
            ).scalar_one()
        assert declared == in_backup
    finally:
        engine.dispose()


def count_committed(url: str) -> int:
    engine = db.make_engine(url)
    try:
        return count(engine, "incident")
    finally:
        engine.dispose()


def test_restore_refuses_a_non_empty_database_unless_forced(cli, database_url, tmp_path):
    populate(cli, database_url)
    backup = tmp_path / "a.backup"
    assert cli("db", "backup", str(backup))[0] == 0
    cli("incident", "declare", "after the backup", "--sev", "3")
    before = snapshot(database_url)

    code, out, err = cli("db", "restore", str(backup))
    assert code == 1 and out == ""
    assert err.startswith("error: the database ") and "is not empty" in err
    assert "pass --force to go ahead" in err
    assert snapshot(database_url) == before

    code, out, err = cli("db", "restore", str(backup), "--force")
    assert (code, err) == (0, "")
    assert "2 incidents" in out
    assert count_committed(database_url) == 2
    # The numbering is the backup's too: the next declare is INC-3 again.
    code, out, err = cli("incident", "declare", "after the restore", "--sev", "3")
    assert (code, err) == (0, "") and "INC-3" in out


def test_restore_refuses_a_backup_from_a_newer_schema(
    cli, database_url, request, tmp_path, monkeypatch
):
    populate(cli, database_url)
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff9999'")
    engine.dispose()
    backup = tmp_path / "newer.backup"
    # Backing up a newer database is allowed: it is the way back for whoever runs that version.
    code, out, _ = cli("db", "backup", str(backup))
    assert code == 0 and "schema revision ffff9999" in out

    target = empty_database_url(request, database_url, tmp_path)
    code, out, err = on(monkeypatch, target, cli)("db", "restore", str(backup))
    assert code == 1
    assert err == (
        f"error: {backup} was made by a newer incidentbot (schema revision ffff9999; this one "
        f"knows up to {db.head_revision()}): restore it with that version or newer\n"
    )
    engine = db.make_engine(target)
    try:
        assert db.current_revision(engine) is None  # nothing restored
    finally:
        engine.dispose()


def test_backup_and_restore_refusals_change_nothing(cli, database_url, tmp_path):
    existing = tmp_path / "taken.backup"
    existing.write_text("keep me")
    not_a_backup = tmp_path / "notes.txt"
    not_a_backup.write_text("hello")
    cases = [
        (("db", "backup", str(existing)), f"{existing} already exists: choose another name, "
                                          "or pass --force"),
        (("db", "backup", str(tmp_path / "no" / "dir" / "x.backup")),
         f"the directory {tmp_path / 'no' / 'dir'} does not exist: create it first"),
        (("db", "restore", str(tmp_path / "missing.backup")),
         f"{tmp_path / 'missing.backup'} does not exist"),
        (("db", "restore", str(not_a_backup)),
         f"{not_a_backup} is not an incidentbot backup (neither SQLite nor pg_dump -Fc)"),
    ]  # fmt: skip
    for argv, message in cases:
        code, out, err = cli(*argv)
        assert (code, out, err) == (1, "", f"error: {message}\n"), argv
    assert existing.read_text() == "keep me"
    assert not (tmp_path / "no").exists()


def test_restore_refuses_a_backup_of_the_other_back_end(cli, database_url, tmp_path):
    other = tmp_path / "other.backup"
    if database_url.startswith("sqlite"):
        other.write_bytes(b"PGDMP" + b"\0" * 100)
        kind, backend = "postgresql", "sqlite"
    else:
        other.write_bytes(b"SQLite format 3\x00" + b"\0" * 100)
        kind, backend = "sqlite", "postgresql"
    code, _, err = cli("db", "restore", str(other), "--force")
    assert code == 1
    assert err.startswith(f"error: {other} is a {kind} backup; the database ")
    assert err.rstrip().endswith(f"is {backend}")


@pytest.mark.postgres
def test_postgres_backup_names_a_missing_pg_dump(pg_cluster, pg_template, tmp_path, monkeypatch,
                                                 capsys):  # fmt: skip
    pg_cluster.execute(f"CREATE DATABASE no_tools TEMPLATE {pg_template}")
    monkeypatch.setenv("INCIDENTBOT_DATABASE_URL", pg_cluster.url("no_tools"))
    monkeypatch.setenv("PATH", str(tmp_path))  # neither on PATH ...
    monkeypatch.setattr("incidentbot.backup.glob.glob", lambda _pattern: [])  # ... nor installed
    code = main(["db", "backup", str(tmp_path / "x.backup")])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == (
        "error: pg_dump not found: install the PostgreSQL client tools (Debian: apt-get install "
        "postgresql-client) or put pg_dump on PATH\n"
    )
    assert not (tmp_path / "x.backup").exists()


def test_an_unreachable_postgres_is_one_line_without_the_password(tmp_path, monkeypatch, capsys):
    url = "postgresql+psycopg://bot:s3cret-pw@127.0.0.1:1/incidentbot"
    monkeypatch.setenv("INCIDENTBOT_DATABASE_URL", url)
    for argv in (["db", "backup", str(tmp_path / "x.backup")], ["db", "downgrade"]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("error: ") and len(err.splitlines()) == 1
        assert "s3cret-pw" not in err
    assert list(tmp_path.iterdir()) == []
