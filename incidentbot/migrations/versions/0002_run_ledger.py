"""run ledger: durable runs, their steps, and per-target locks

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from incidentbot.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("wake_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_requested_at", UTCDateTime(), nullable=True),
        sa.Column(
            "cancel_requested_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True
        ),
        sa.Column("takeovers", sa.Integer(), nullable=False),
        sa.Column("lock_acquired_at", UTCDateTime(), nullable=True),
        sa.Column("lock_released_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("ledger_run", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_run_claim", ["status", "wake_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ledger_run_incident_id"), ["incident_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_ledger_run_target"), ["target"], unique=False)

    op.create_table(
        "ledger_lock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["ledger_run.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("target"),
    )
    with op.batch_alter_table("ledger_lock", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_lock_run_id"), ["run_id"], unique=False)

    op.create_table(
        "ledger_step",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("idempotent", sa.Boolean(), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("deadline_at", UTCDateTime(), nullable=True),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["ledger_run.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "idx", name="uq_ledger_step_run_idx"),
    )
    with op.batch_alter_table("ledger_step", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_step_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ledger_step", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_step_run_id"))
    op.drop_table("ledger_step")
    with op.batch_alter_table("ledger_lock", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_lock_run_id"))
    op.drop_table("ledger_lock")
    with op.batch_alter_table("ledger_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_run_target"))
        batch_op.drop_index(batch_op.f("ix_ledger_run_incident_id"))
        batch_op.drop_index("ix_ledger_run_claim")
    op.drop_table("ledger_run")
