"""postmortem impact numbers: requests failed, users and validators affected, degraded service,
blocks behind and missed slots, each with who typed it

Revision ID: 0018
Revises: 0017

Existing postmortems have no numbers: ``impact`` is NULL for them, so ``db downgrade`` reports
data lost only when someone typed a number. The column is added and dropped in place.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("postmortem", sa.Column("impact", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("postmortem", "impact")
