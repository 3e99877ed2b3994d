"""A declare's rows in one PostgreSQL statement: the Slack request's claim, the incident with the
next INC number, its commander, its first timeline events and the runs it queues.

Each statement is a round trip to a server that, on a small machine, shares its CPUs with the
bot; a declare's answer waits for all of them. Here they are data-modifying ``WITH`` clauses of
one statement, which PostgreSQL runs as one (all or nothing, one snapshot):

- ``claim``: the request's ``INSERT ... ON CONFLICT DO NOTHING`` into ``inbound_request`` (see
  :mod:`incidentbot.inbound`), or no claim at all (a declare from the CLI, an alert);
- ``existing``: the incident a repeated idempotency key already opened;
- ``inc``: the incident, numbered by ``nextval`` only if the claim is new and the key is not
  (a replay or a repeat takes no number, so leaves no gap);
- ``role`` and ``events``: its commander and its events (one JSON parameter, in the order
  given, see :mod:`incidentbot.incidents.rowsets`), for the incident just inserted, if any;
- ``ledger_runs`` and ``ledger_steps``: the runs the declare queues (its channel and its
  announcement, keyed by the INC number) and their steps, for that incident, if any (the
  ledger's clauses, :mod:`incidentbot.ledger.folded`).

The declared event's summary names the INC number, known only in the statement: its rows carry
the summary's ``head`` and the number goes between it and the rest. SQLite, where a statement
costs no round trip, keeps the separate statements (:mod:`incidentbot.incidents.declaring`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from incidentbot.incidents.models import Incident
from incidentbot.incidents.rowsets import json_rows
from incidentbot.ledger import folded

_INCIDENT = Incident.__table__  # type: ignore[attr-defined]
# Every column but the id, the number (the sequence's) and those a new incident leaves empty.
_LATER = {"resolution_summary", "channel_id", "channel_name", "header_ts", "digest_ts",
          "acknowledged_at", "mitigated_at", "resolved_at", "closed_at"}  # fmt: skip
COLUMNS = tuple(c.key for c in _INCIDENT.columns if c.key not in {"id", "number", *_LATER})
_EVENT_TIMES = ("occurred_at", "recorded_at")

_CLAIM = (
    "claim AS (INSERT INTO inbound_request (key, claimed_at, finished_at)"
    " VALUES (CAST(:claim AS varchar), statement_timestamp(), statement_timestamp())"
    " ON CONFLICT (key) DO NOTHING RETURNING key)"
)
_NO_CLAIM = "claim AS (SELECT CAST(NULL AS varchar) AS key)"
# A run's key starts with the incident's ref (Incident.ref), known only in the statement.
_RUN_KEY_PREFIX = "'INC-' || inc.number"


@dataclass(frozen=True, slots=True)
class Outcome:
    """``claimed``: the claim was new (always True without one); ``existing``: the id of the
    incident the idempotency key opened before; ``id`` and ``number``: the new incident's;
    ``runs``: the runs written (:data:`incidentbot.ledger.folded.RESULT`), if any were given."""

    claimed: bool
    existing: int | None
    id: int | None
    number: int | None
    runs: Any = None


def run(
    connection: Connection,
    values: dict[str, Any],
    role: dict[str, Any],
    events: list[dict[str, Any]],
    *,
    claim: str | None,
    runs: folded.Folded | None = None,
) -> Outcome:
    """Run the statement: ``values`` are the incident's :data:`COLUMNS`, ``role`` its
    commander's row and ``events`` its events (``incident_id`` left out; a row's ``head``, when
    not None, goes before the INC number at the start of its summary); ``runs``: the runs it
    queues, their keys after the incident's ref."""
    params = dict(values)
    params["role_user"], params["role_by"] = role["user"], role["assigned_by"]
    params["role_at"] = role["started_at"]
    params["events"] = json_rows(events, _EVENT_TIMES)
    if claim is not None:
        params["claim"] = claim
    if runs is not None:
        params.update(folded.params(runs))
    row = connection.execute(_statement(claim is not None, runs is not None), params).one()
    return Outcome(bool(row[0]), row[1], row[2], row[3], row[4] if runs is not None else None)


@cache
def _statement(with_claim: bool, with_runs: bool) -> TextClause:
    dialect = postgresql.dialect()
    columns = [_INCIDENT.c[name] for name in COLUMNS]
    names = ", ".join(f'"{c.name}"' for c in columns)
    casts = ", ".join(f"CAST(:{c.key} AS {c.type.compile(dialect=dialect)})" for c in columns)
    # Made of the model's column names and types only: no value is ever part of the text.
    sql = (
        f"WITH {_CLAIM if with_claim else _NO_CLAIM},"  # noqa: S608
        " existing AS (SELECT id FROM incident WHERE idempotency_key = :idempotency_key),"
        f" inc AS (INSERT INTO incident (number, {names})"
        f" SELECT nextval('incident_number'), {casts}"
        " WHERE EXISTS (SELECT FROM claim) AND NOT EXISTS (SELECT FROM existing)"
        " RETURNING id, number),"
        ' role AS (INSERT INTO role_assignment (incident_id, role, "user", assigned_by,'
        " started_at) SELECT id, 'commander', CAST(:role_user AS varchar),"
        " CAST(:role_by AS varchar), CAST(:role_at AS timestamptz) FROM inc),"
        " events AS (INSERT INTO timeline_event (incident_id, occurred_at, recorded_at, kind,"
        " actor, summary, data, source_key)"
        " SELECT inc.id, r.occurred_at, r.recorded_at, r.kind, r.actor,"
        " CASE WHEN r.head IS NULL THEN r.summary ELSE r.head || inc.number || r.summary END,"
        " r.data, r.source_key"
        " FROM inc, ROWS FROM (json_to_recordset(CAST(:events AS json)) AS (occurred_at"
        " timestamptz, recorded_at timestamptz, kind varchar, actor varchar, head text,"
        " summary text, data json, source_key varchar))"
        " WITH ORDINALITY AS r(occurred_at, recorded_at, kind, actor, head, summary, data,"
        " source_key, n) ORDER BY r.n)"  # r.n: the row's place in the array; the ids follow it
        + (f", {folded.ctes('inc', _RUN_KEY_PREFIX)}" if with_runs else "")
        + " SELECT EXISTS (SELECT FROM claim), (SELECT id FROM existing),"
        " (SELECT id FROM inc), (SELECT number FROM inc)"
        + (f", {folded.RESULT}" if with_runs else "")
    )
    # The incident's values go through their columns' types (UTC times, JSON fields).
    return text(sql).bindparams(
        *[bindparam(c.key, type_=c.type) for c in columns],
        bindparam("role_at", type_=_INCIDENT.c.created_at.type),
    )
