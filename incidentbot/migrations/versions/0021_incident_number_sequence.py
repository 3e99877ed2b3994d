"""INC numbers from a sequence on PostgreSQL: concurrent declares no longer queue on one row

Revision ID: 0021
Revises: 0020

On PostgreSQL a declare took its number by updating the ``counter`` row ``incident`` and held
that row's lock until it committed, so declares ran one after another. The number now comes
from the sequence ``incident_number``, which no transaction locks; it starts past the counter
and past every number already used. SQLite keeps the counter row (its writers take turns
anyway). Going back writes the last number handed out into the counter row again: nothing is
lost.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    used = conn.execute(
        sa.text(
            "SELECT GREATEST("
            "COALESCE((SELECT value FROM counter WHERE name = 'incident'), 0), "
            "COALESCE((SELECT MAX(number) FROM incident), 0))"
        )
    ).scalar_one()
    # Owned by the column it numbers: dropping the table (a forced restore) drops it too.
    conn.execute(
        sa.text(
            "CREATE SEQUENCE incident_number AS bigint START WITH 1 MINVALUE 1 "
            "OWNED BY incident.number"
        )
    )
    if used:
        conn.execute(sa.text("SELECT setval('incident_number', :used, true)"), {"used": int(used)})
    # The row would only go stale: the sequence is the one source of numbers now.
    conn.execute(sa.text("DELETE FROM counter WHERE name = 'incident'"))


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    last = conn.execute(
        sa.text(
            "SELECT GREATEST("
            "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM incident_number), "
            "COALESCE((SELECT MAX(number) FROM incident), 0))"
        )
    ).scalar_one()
    conn.execute(sa.text("DELETE FROM counter WHERE name = 'incident'"))
    if last:
        conn.execute(
            sa.text("INSERT INTO counter (name, value) VALUES ('incident', :value)"),
            {"value": int(last)},
        )
    conn.execute(sa.text("DROP SEQUENCE incident_number"))
