"""an index on the timeline's kind: lookups of one kind of event (a group's snooze, an
incident's status updates, archive notices, suggested runbooks) no longer scan the timeline

Revision ID: 0019
Revises: 0018

Only an index: nothing is lost going back.
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_timeline_kind", "timeline_event", ["kind", "incident_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_timeline_kind", table_name="timeline_event")
