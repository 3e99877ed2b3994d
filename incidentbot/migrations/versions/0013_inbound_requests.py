"""inbound requests: each Slack command, click and event runs once across replicas

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from incidentbot.db import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_request",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_inbound_request_claimed_at", "inbound_request", ["claimed_at"])


def downgrade() -> None:
    op.drop_index("ix_inbound_request_claimed_at", table_name="inbound_request")
    op.drop_table("inbound_request")
