"""timeline summaries without Slack markup: people named by id and listed in the data

Entries written before this revision hold Slack mentions (``Invited <@U0123ABCD>``,
``<@U0123ABCD> approved runbook ...``). The core now writes the id itself and lists the people
in the entry's data (``people``); each output renders them (a mention in Slack, a name
elsewhere). Downgrade writes the mentions back for the entries that list people (and keeps
the list, which older code ignores).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_MENTION = re.compile(r"<@([UW][A-Z0-9]{2,})(?:\|[^<>]*)?>")
_TABLE = sa.table(
    "timeline_event",
    sa.column("id", sa.Integer),
    sa.column("summary", sa.Text),
    sa.column("data", sa.JSON),
)


def _data(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value) if isinstance(value, dict) else {}


def _edit_timeline(change: Any) -> None:
    """Apply ``change(summary, data) -> (summary, data) | None`` to every entry, with the
    append-only guard lifted for this migration only."""
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS timeline_event_no_update")
    else:
        op.execute("ALTER TABLE timeline_event DISABLE TRIGGER timeline_event_append_only")
    rows = bind.execute(sa.select(_TABLE.c.id, _TABLE.c.summary, _TABLE.c.data)).all()
    for row_id, summary, data in rows:
        changed = change(summary or "", _data(data))
        if changed is not None:
            bind.execute(
                _TABLE.update()
                .where(_TABLE.c.id == row_id)
                .values(summary=changed[0], data=changed[1])
            )
    if sqlite:
        op.execute(
            "CREATE TRIGGER timeline_event_no_update BEFORE UPDATE ON timeline_event "
            "BEGIN SELECT RAISE(ABORT, 'timeline_event is append-only'); END"
        )
    else:
        op.execute("ALTER TABLE timeline_event ENABLE TRIGGER timeline_event_append_only")


def _to_ids(summary: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    if "<@" not in summary:
        return None
    found = list(dict.fromkeys(_MENTION.findall(summary)))
    if not found:
        return None
    named = {v for k in ("users", "user", "previous") for v in _strings(data.get(k))}
    listed = _strings(data.get("people"))
    extra = [u for u in found if u not in named and u not in listed]
    out = {**data, "people": listed + extra} if extra else data
    return _MENTION.sub(r"\1", summary), out


def _strings(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, str)]


def _to_mentions(summary: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    # ``users``: the invitation entry names its people there (it always listed them).
    people = [*_strings(data.get("people")), *_strings(data.get("users"))]
    if not people:
        return None
    ids = [p.removeprefix("slack:") for p in people if re.match(r"^(slack:)?[UW][A-Z0-9]{2,}$", p)]
    out = summary
    if ids:
        pattern = re.compile(
            r"(?<![\w@:<])(?:slack:)?("
            + "|".join(map(re.escape, sorted(ids, key=len, reverse=True)))
            + r")\b"
        )
        out = pattern.sub(r"<@\1>", summary)
    # The data keeps ``people``: older code ignores it, and an upgrade again finds it as is.
    return (out, data) if out != summary else None


def upgrade() -> None:
    _edit_timeline(_to_ids)


def downgrade() -> None:
    _edit_timeline(_to_mentions)
