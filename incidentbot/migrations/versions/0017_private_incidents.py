"""private incidents: an incident may be private (its channel private, kept out of the digest)

Revision ID: 0017
Revises: 0016

Every existing incident was declared in a public channel: ``private`` is NULL for all of them,
and stays NULL for public ones, so ``db downgrade`` reports data lost only when some incident
is private. The column is added and dropped in place (SQLite 3.35+ drops columns natively):
rebuilding the ``incident`` table, as a batch migration does on SQLite, would break the foreign
keys that every other table holds to it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "incident",
        sa.Column("private", sa.Boolean(), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("incident", "private")
