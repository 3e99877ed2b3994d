"""standby channels: a public and a private channel kept ready for the next incident to take
and rename, so that a declare need not wait for a channel to be created

Revision ID: 0020
Revises: 0019

A new table: going back drops it. The channels it lists stay in Slack, named
``incident-standby-<n>``; a team downgrading archives the ready ones by hand.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from incidentbot.db import UTCDateTime

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_SPARE = "state IN ('filling', 'ready')"


def upgrade() -> None:
    op.create_table(
        "standby_channel",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("channel_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("channel_name", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incident.id"), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_standby_channel_incident_id", "standby_channel", ["incident_id"])
    op.create_index(
        "uq_standby_spare",
        "standby_channel",
        ["private"],
        unique=True,
        sqlite_where=sa.text(_SPARE),
        postgresql_where=sa.text(_SPARE),
    )


def downgrade() -> None:
    op.drop_index("uq_standby_spare", table_name="standby_channel")
    op.drop_index("ix_standby_channel_incident_id", table_name="standby_channel")
    op.drop_table("standby_channel")
