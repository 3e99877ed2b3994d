"""handoff: watch notes and handoff acknowledgements

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from incidentbot.db import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "handoff_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rotation", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("source_key", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_key"),
    )
    with op.batch_alter_table("handoff_note", schema=None) as batch_op:
        batch_op.create_index("ix_handoff_note_rotation", ["rotation"], unique=False)
        batch_op.create_index("ix_handoff_note_created_at", ["created_at"], unique=False)
    op.create_table(
        "handoff_ack",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rotation", sa.String(length=64), nullable=False),
        sa.Column("handoff_at", UTCDateTime(), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=False),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rotation", "handoff_at", name="uq_handoff_ack_slot"),
    )


def downgrade() -> None:
    op.drop_table("handoff_ack")
    op.drop_table("handoff_note")
