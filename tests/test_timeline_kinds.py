"""Timeline kinds say what happened, not which chat tool it happened in: rows written with the
old Slack-named kinds are renamed by the migration (on SQLite and PostgreSQL), the down
migration names them back, and the timeline stays append-only throughout."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from incidentbot import db
from tests.db_support import populate

OLD_TO_NEW = {
    "slack.channel_created": "channel.created",
    "slack.invited": "responders.invited",
    "slack.header_posted": "header.posted",
    "slack.announced": "digest.announced",
    "slack.pinned": "timeline.pinned",
}
# The migration that renames them (found by what it does: the lead may renumber it).
RENAMING = next(r for r in db.script_directory().walk_revisions() if hasattr(r.module, "RENAMED"))


def kinds(url: str) -> list[str]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT kind FROM timeline_event ORDER BY id"))
            return [row[0] for row in rows]
    finally:
        engine.dispose()


def write_old_events(url: str) -> None:
    """What an older incidentbot wrote for INC-1's channel, invitations, header, digest, pin."""
    engine = db.make_engine(url)
    events = sa.table(
        "timeline_event",
        sa.column("incident_id"),
        sa.column("occurred_at", db.UTCDateTime()),
        sa.column("recorded_at", db.UTCDateTime()),
        sa.column("kind"),
        sa.column("actor"),
        sa.column("summary"),
        sa.column("data", sa.JSON()),
    )
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            for kind in OLD_TO_NEW:
                conn.execute(
                    events.insert().values(
                        incident_id=1, occurred_at=at, recorded_at=at, kind=kind,
                        actor="incidentbot", summary="written by an older release", data={},
                    )
                )  # fmt: skip
    finally:
        engine.dispose()


def test_the_migration_renames_old_kinds_and_the_rollback_restores_them(cli, database_url):
    populate(cli, database_url)
    code, _, err = cli("db", "downgrade", RENAMING.down_revision)
    assert (code, err) == (0, "")
    write_old_events(database_url)
    before = kinds(database_url)
    assert [k for k in before if k.startswith("slack.")] == list(OLD_TO_NEW)

    code, _, err = cli("db", "upgrade")
    assert (code, err) == (0, "")
    after = kinds(database_url)
    assert after == [OLD_TO_NEW.get(k, k) for k in before]
    assert not [k for k in after if k.startswith("slack.")]
    # What an operator reads: the timeline shows the neutral kinds.
    code, out, _ = cli("timeline", "INC-1")
    assert code == 0
    for new in OLD_TO_NEW.values():
        assert new in out
    assert "slack." not in out

    code, _, err = cli("db", "downgrade", RENAMING.down_revision)
    assert (code, err) == (0, "")
    assert kinds(database_url) == before
    assert cli("db", "upgrade")[0] == 0
    assert kinds(database_url) == after


def test_the_timeline_is_still_append_only_after_the_migration(cli, database_url):
    populate(cli, database_url)
    engine = db.make_engine(database_url)
    try:
        for statement in (
            "UPDATE timeline_event SET kind = 'edited'",
            "DELETE FROM timeline_event",
        ):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()
    assert "edited" not in kinds(database_url)
