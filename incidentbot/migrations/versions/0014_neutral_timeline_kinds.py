"""neutral timeline kinds: what happened, not which chat tool it happened in

Revision ID: 0014
Revises: 0013

The timeline is the core's record; its kinds named Slack (``slack.channel_created``, ...). Rows
written before this revision are renamed to the neutral kinds; the down migration renames them
back, so a rollback to the previous release reads its own kinds again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# old kind -> new kind
RENAMED = {
    "slack.channel_created": "channel.created",
    "slack.invited": "responders.invited",
    "slack.header_posted": "header.posted",
    "slack.announced": "digest.announced",
    "slack.pinned": "timeline.pinned",
}

_events = sa.table("timeline_event", sa.column("kind", sa.String(64)))


def _rename(pairs: dict[str, str]) -> None:
    """Rename kinds in place. The table is append-only (migration 0001's triggers refuse any
    UPDATE): the guard is lifted for these statements only, inside the migration's transaction,
    and put back as it was."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS timeline_event_no_update")
    else:
        op.execute("ALTER TABLE timeline_event DISABLE TRIGGER timeline_event_append_only")
    for old, new in pairs.items():
        op.execute(_events.update().where(_events.c.kind == old).values(kind=new))
    if sqlite:
        op.execute(
            "CREATE TRIGGER timeline_event_no_update BEFORE UPDATE ON timeline_event "
            "BEGIN SELECT RAISE(ABORT, 'timeline_event is append-only'); END"
        )
    else:
        op.execute("ALTER TABLE timeline_event ENABLE TRIGGER timeline_event_append_only")


def upgrade() -> None:
    _rename(RENAMED)


def downgrade() -> None:
    _rename({new: old for old, new in RENAMED.items()})
