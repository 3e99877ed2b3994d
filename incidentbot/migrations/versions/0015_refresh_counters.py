"""refresh counters: an incident's header and digest refreshes numbered by a counter row

Revision ID: 0015
Revises: 0014

Refresh runs were keyed by the timeline's length, which meant loading the whole timeline in every
change's transaction. Each incident now has a ``refresh:<id>`` row in ``counter``; it starts past
every key already used (the timeline's length, or a larger number found in a refresh run's key),
so no new key can meet an old one.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_KEY = re.compile(r":refresh:(\d+)$")


def upgrade() -> None:
    conn = op.get_bind()
    start: dict[int, int] = {}
    counts = sa.text("SELECT incident_id, COUNT(*) FROM timeline_event GROUP BY incident_id")
    for incident_id, count in conn.execute(counts):
        start[int(incident_id)] = int(count)
    keys = sa.text(
        "SELECT incident_id, idempotency_key FROM ledger_run "
        "WHERE kind = 'incident.refresh' AND incident_id IS NOT NULL"
    )
    for incident_id, key in conn.execute(keys):
        match = _KEY.search(key)
        if match:
            start[int(incident_id)] = max(start.get(int(incident_id), 0), int(match.group(1)))
    rows = [{"name": f"refresh:{i}", "value": value} for i, value in sorted(start.items())]
    if rows:
        conn.execute(sa.text("INSERT INTO counter (name, value) VALUES (:name, :value)"), rows)


def downgrade() -> None:
    # The older incidentbot counts the timeline instead; these rows mean nothing to it.
    op.execute("DELETE FROM counter WHERE name LIKE 'refresh:%'")
