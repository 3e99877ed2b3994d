"""Upgrade and rollback as docs/deployment.md tells an operator to do them, on SQLite and
PostgreSQL: the latest migration undone on a populated database and applied again with the
data intact; a downgrade that would delete data refused without --drop-data; and a database
from a newer incidentbot refused by every command that touches it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa

from incidentbot import db
from tests.db_support import CORE_TABLES, populate, snapshot

HEAD = db.head_revision()
# The revisions before HEAD, newest first: the rollback targets an operator can name.
OLDER = [r.revision for r in db.script_directory().walk_revisions() if r.revision != HEAD]
PREVIOUS = OLDER[0]
# A migration whose downgrade deletes what people wrote: 0011 added the export claim.
BEFORE_EXPORT_CLAIM = "0010"


def test_migration_files_and_alembic_agree_on_the_revisions():
    script = db.script_directory()
    assert db.head_revision() == script.get_current_head() == HEAD
    assert db.known_revisions() == {rev.revision for rev in script.walk_revisions()}
    assert script.get_revision(HEAD).down_revision == PREVIOUS
    assert BEFORE_EXPORT_CLAIM in OLDER


def test_downgrade_one_step_then_upgrade_keeps_the_data(cli, database_url):
    populate(cli, database_url)
    before = snapshot(database_url)

    code, out, err = cli("db", "downgrade")
    assert (code, err) == (0, "")
    assert out.endswith(f": downgraded from {HEAD} to {PREVIOUS}\n")
    # The older incidentbot's schema: what it knows is all there.
    downgraded = snapshot(database_url)
    assert {t: len(rows) for t, rows in downgraded.items()} == {
        t: len(rows) for t, rows in before.items()
    }
    for table in CORE_TABLES:  # every column the older schema has, with its values
        pairs = zip(before[table], downgraded[table], strict=True)
        kept = [{k: row[k] for k in after} for row, after in pairs]
        assert kept == downgraded[table]
    # This (newer) incidentbot refuses to run on it until it is upgraded again.
    code, _, err = cli("incident", "list")
    assert code == 1
    assert f"is at revision {PREVIOUS}, this incidentbot needs {HEAD}" in err

    code, out, err = cli("db", "upgrade")
    assert (code, err) == (0, "")
    assert out.endswith(f": upgraded from {PREVIOUS} to {HEAD}\n")
    assert snapshot(database_url) == before
    code, out, _ = cli("incident", "show", "INC-1")
    assert code == 0 and "RPC p99 above 2s" in out


def test_a_downgrade_that_deletes_data_needs_drop_data(cli, database_url):
    populate(cli, database_url)
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE action_item SET export_started_by = 'alice'"))
    engine.dispose()
    before = snapshot(database_url)

    code, out, err = cli("db", "downgrade", BEFORE_EXPORT_CLAIM)
    assert (code, out) == (1, "")
    assert err.startswith("error: downgrading ")
    assert (
        f"from {HEAD} to {BEFORE_EXPORT_CLAIM} deletes column action_item.export_started_by (1 "
        "row with a value): back it up first (`incidentbot db backup FILE`), then pass "
        "--drop-data\n"
    ) in err
    assert snapshot(database_url) == before  # refused: nothing changed
    engine = db.make_engine(database_url)
    assert db.current_revision(engine) == HEAD
    engine.dispose()

    code, out, err = cli("db", "downgrade", BEFORE_EXPORT_CLAIM, "--drop-data")
    assert (code, err) == (0, "")
    assert "deleted: column action_item.export_started_by (1 row with a value)" in out
    assert cli("db", "upgrade")[0] == 0
    after = snapshot(database_url)
    assert after["incident"] == before["incident"]
    assert after["timeline_event"] == before["timeline_event"]
    assert [row["export_started_by"] for row in after["action_item"]] == [None]


def test_downgrade_to_a_revision_that_is_not_older_is_refused(cli, database_url):
    code, _, err = cli("db", "downgrade", "9999")
    assert code == 1
    assert err.startswith("error: cannot downgrade ")
    assert f"from {HEAD} to '9999': the revisions before {HEAD} are {', '.join(OLDER)}" in err
    assert cli("db", "status")[0] == 0  # still current


NEWER = "ffff9999"


@pytest.fixture
def newer_database(database_url):
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE alembic_version SET version_num = '{NEWER}'"))
    engine.dispose()
    return database_url


def newer_message(url: str) -> str:
    where = sa.make_url(url).render_as_string(hide_password=True)
    return (
        f"error: the database at {where} is at revision {NEWER}, newer than this incidentbot "
        f"(knows up to {HEAD}): upgrade incidentbot, or restore the backup taken before the "
        "upgrade\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("incident", "list"),
        ("incident", "declare", "x"),
        ("db", "status"),
        ("db", "upgrade"),
        ("db", "downgrade"),
        ("runs", "list"),
    ],
    ids=lambda argv: " ".join(argv),
)
def test_commands_refuse_a_database_from_a_newer_incidentbot(cli, newer_database, argv):
    code, out, err = cli(*argv)
    assert (code, out, err) == (1, "", newer_message(newer_database))
    engine = db.make_engine(newer_database)
    assert db.current_revision(engine) == NEWER  # untouched
    engine.dispose()


@pytest.mark.parametrize("command", ["serve", "worker", "scheduler"])
def test_long_running_processes_refuse_a_newer_schema(newer_database, tmp_path, command):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": ":".join(sys.path),
        "INCIDENTBOT_DATABASE_URL": newer_database,
        "INCIDENTBOT_SLACK_BOT_TOKEN": "xoxb-not-used",
        "INCIDENTBOT_SLACK_SIGNING_SECRET": "not-used",
        "INCIDENTBOT_HTTP__PORT": "0",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "incidentbot.cli", command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.endswith(newer_message(newer_database))
