"""A Slack declare rehearsed before ``/healthz`` says ready, on both back ends, leaving nothing.

The first ``/incident declare`` after a start compiles every statement it runs (SQLAlchemy keeps
a compiled form of each per engine, so only the first run pays), including the claim of the
Slack request (:mod:`incidentbot.inbound`) and the look-up of its idempotency key. Here a
declare runs as the Slack door runs it (the deferred claim first, the incident with its key,
the effects it queues) in one transaction that is always rolled back:

- **SQLite** has no sequences: the rollback undoes every row and the INC counter.
- **PostgreSQL** takes numbers from sequences (the INC number, every ``id``), and a rolled-back
  ``nextval`` is not given back: the next incident would skip a number and run numbers would
  jump at every start. So the rehearsal first shadows every table and sequence of the bot with
  a temporary one of the same name (``pg_temp``, private to this connection, gone with the
  rollback), whose ``id`` columns draw from a temporary sequence. The statements' text is the
  same (the names are not schema-qualified), so the compiled forms are those a real declare
  uses; the rows go to tables nobody else sees. It is not rehearsed if any name does not
  resolve to its temporary shadow (a ``search_path`` that puts ``pg_temp`` after the bot's
  schema).

Either way, a statement the rehearsal tries to run on another connection is refused (it could
reach the real tables), and nothing is ever committed: ledger events and the group commit's
callbacks are delivered only after a commit. A process that dies mid-rehearsal leaves nothing
either (its transaction dies with it).

On PostgreSQL it waits at most :data:`LOCK_TIMEOUT` for a table's lock (a migration run from
another replica holds them): the step then fails, is logged, and the bot starts without it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel

from incidentbot.config import Settings

log = logging.getLogger(__name__)

ACTOR = "incidentbot"
TITLE = "warm-up"
LOCK_TIMEOUT = "2s"


# The sequences of the schema the bot's tables are in (their ids, the INC number).
_SEQUENCES = text(
    "SELECT s.relname FROM pg_class s WHERE s.relkind = 'S' AND s.relnamespace = "
    "(SELECT relnamespace FROM pg_class WHERE oid = to_regclass(quote_ident(:t)))"
)
_SHADOW = """DO $warmup$
DECLARE t text; r record;
BEGIN
  FOREACH t IN ARRAY string_to_array(current_setting('incidentbot.warmup_tables'), ',') LOOP
    EXECUTE format('CREATE TEMP TABLE %I (LIKE %I INCLUDING ALL) ON COMMIT DROP', t, t);
  END LOOP;
  FOREACH t IN ARRAY string_to_array(current_setting('incidentbot.warmup_sequences'), ',') LOOP
    EXECUTE format('CREATE TEMP SEQUENCE %I', t);
  END LOOP;
  CREATE TEMP SEQUENCE warmup_ids;
  FOR r IN
    SELECT c.relname, a.attname FROM pg_attrdef d
    JOIN pg_class c ON c.oid = d.adrelid
    JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
    WHERE c.relnamespace = pg_my_temp_schema()
      AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%'
  LOOP
    EXECUTE format('ALTER TABLE pg_temp.%I ALTER COLUMN %I SET DEFAULT nextval(%L)',
                   r.relname, r.attname, 'pg_temp.warmup_ids');
  END LOOP;
END
$warmup$"""


class LeftTheRehearsal(RuntimeError):
    """A statement of the rehearsal was about to run outside its transaction."""


def declare_rehearsal(engine: Engine, settings: Settings) -> None:
    """A declare as a Slack command runs it, rolled back; on PostgreSQL against temporary
    shadows of the bot's tables and sequences (see the module docstring)."""
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        return
    from incidentbot import inbound, models  # noqa: F401  (every table is mapped)
    from incidentbot.incidents import effects
    from incidentbot.incidents import service as svc
    from incidentbot.usecases.incidents import declare_effects

    key = f"warm-up:{uuid.uuid4().hex}"
    with engine.connect() as conn, _confined(engine, conn):
        conn.begin()
        try:
            if dialect == "postgresql":
                # Copying a table's shape waits for its lock: a migration under way elsewhere
                # fails the step (logged) rather than holding the start.
                conn.execute(
                    text("SELECT set_config('lock_timeout', :t, true)"), {"t": LOCK_TIMEOUT}
                )
                shadow(conn)
            with (
                Session(bind=conn, join_transaction_mode="rollback_only") as s,
                inbound.deferred(key),
            ):
                claim = inbound.claim_key(s)  # PostgreSQL: claimed in the declare's statement
                if claim is None:
                    inbound.claim_here(s)
                inc = svc.declare_claimed(
                    s,
                    settings,
                    claim,
                    title=TITLE,
                    severity=settings.default_severity,
                    actor=ACTOR,
                    idempotency_key=key,
                    runs=(runs := effects.declare_runs(ACTOR)),  # written with the incident
                )
                assert inc is not None
                declare_effects(s, settings, inc, ACTOR, chat=runs.started is None)
                s.flush()
        finally:
            conn.rollback()


def shadow(conn: Connection) -> None:
    """PostgreSQL: a temporary table of the same name and shape (indexes, checks and defaults;
    no foreign keys, no triggers) for each of the bot's tables, and a temporary sequence for
    each sequence of their schema, in ``conn``'s open transaction; every ``id`` drawn from a
    temporary sequence. Raises unless every name now resolves to its shadow."""
    from incidentbot.incidents.declaring import INCIDENT_SEQUENCE

    tables = sorted(SQLModel.metadata.tables)
    found = set(conn.execute(_SEQUENCES, {"t": "incident"}).scalars())
    sequences = sorted(found | {INCIDENT_SEQUENCE})  # the INC number's, whatever was found
    names = tables + sequences
    # A DO block takes no parameters: the names reach it as a setting of this transaction.
    conn.execute(
        text(
            "SELECT set_config('incidentbot.warmup_tables', :t, true), "
            "set_config('incidentbot.warmup_sequences', :s, true)"
        ),
        {"t": ",".join(tables), "s": ",".join(sequences)},
    )
    conn.exec_driver_sql(_SHADOW.replace("%", "%%"))  # psycopg's placeholders
    elsewhere = conn.execute(
        text(
            "SELECT n FROM unnest(CAST(:names AS text[])) AS n "
            "WHERE to_regclass(quote_ident(n)) IS NULL OR (SELECT relnamespace FROM pg_class "
            "WHERE oid = to_regclass(quote_ident(n))) <> pg_my_temp_schema()"
        ),
        {"names": names},
    ).all()
    leftover = conn.execute(
        text(
            "SELECT count(*) FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid "
            "WHERE c.relnamespace = pg_my_temp_schema() "
            "AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%' "
            "AND pg_get_expr(d.adbin, d.adrelid) NOT LIKE '%warmup_ids%'"
        )
    ).scalar_one()
    if elsewhere or leftover:
        raise LeftTheRehearsal(
            "the temporary tables do not shadow the bot's (search_path puts pg_temp later?): "
            + ", ".join(n for (n,) in elsewhere)
        )


@contextmanager
def _confined(engine: Engine, conn: Connection) -> Iterator[None]:
    """Refuse any statement this thread runs on another connection of ``engine`` meanwhile."""
    me = threading.get_ident()
    ours = conn.connection.dbapi_connection

    def check(connection: Connection, *_args: Any) -> None:
        if threading.get_ident() == me and connection.connection.dbapi_connection is not ours:
            raise LeftTheRehearsal("the declare rehearsal tried to leave its transaction")

    event.listen(engine, "before_cursor_execute", check)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", check)
