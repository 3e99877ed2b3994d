"""the list's index holds the columns a list line shows: a page is read off the index alone

Revision ID: 0023
Revises: 0022

``ix_incident_status_number (status, number)`` becomes ``ix_incident_list (status, number,
severity, title, channel_id, private)``: the same order and the same prefix, so the same page
is found the same way, and then each row is read off the index entry instead of a lookup of
the incident's row (on SQLite a search of the table's B-tree and the decoding of a 25-column
record per line). Only an index: nothing is lost going back.
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

COLUMNS = ["status", "number", "severity", "title", "channel_id", "private"]


def upgrade() -> None:
    op.create_index("ix_incident_list", "incident", COLUMNS)
    op.drop_index("ix_incident_status_number", table_name="incident")


def downgrade() -> None:
    op.create_index("ix_incident_status_number", "incident", ["status", "number"])
    op.drop_index("ix_incident_list", table_name="incident")
