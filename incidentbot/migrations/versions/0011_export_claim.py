"""action items: the export under way, so two processes cannot open two issues

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from incidentbot.db import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("action_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("export_started_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("export_started_by", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("action_item", schema=None) as batch_op:
        batch_op.drop_column("export_started_by")
        batch_op.drop_column("export_started_at")
