"""runbooks: runbook runs and approvals; rollback steps in the ledger

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from incidentbot.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_step", sa.Integer(), nullable=True))
    op.create_table(
        "runbook_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("runbook", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=16), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("requester", sa.String(length=128), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("approval", sa.String(length=16), nullable=False),
        sa.Column("approvals_needed", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=True),
        sa.Column("message_ts", sa.String(length=32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["ledger_run.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id"),
    )
    with op.batch_alter_table("runbook_run", schema=None) as batch_op:
        batch_op.create_index("ix_runbook_run_runbook", ["runbook"], unique=False)
        batch_op.create_index("ix_runbook_run_incident_id", ["incident_id"], unique=False)
    op.create_table(
        "runbook_approval",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("runbook_run_id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["runbook_run_id"], ["runbook_run.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("runbook_run_id", "user", name="uq_runbook_approval_user"),
    )
    with op.batch_alter_table("runbook_approval", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runbook_approval_runbook_run_id", ["runbook_run_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("runbook_approval")
    op.drop_table("runbook_run")
    with op.batch_alter_table("ledger_run", schema=None) as batch_op:
        batch_op.drop_column("failed_step")
