"""an index on the incidents' status and number: a page of open incidents is read off it,
status by status, without reading the resolved ones older than the open

Revision ID: 0022
Revises: 0021

Only an index: nothing is lost going back.
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_incident_status_number", "incident", ["status", "number"])


def downgrade() -> None:
    op.drop_index("ix_incident_status_number", table_name="incident")
