"""Reads run once too, without a claim on the answer path (:mod:`incidentbot.inbound`).

A command that only reads (``list``, ``timeline``, ``summary``, ``roles``, ``help``) changes
nothing, so running it again could only show newer data, never do something twice. It is not
claimed before it runs (a transaction of its own, on SQLite a turn in the writers' queue, while
Slack waits): the door looks up its key (one indexed read, no write), runs it, and its answer
is recorded once sent (:class:`Recordings`: written finished, with the answer, if the key is
still unknown). A replay or a retry then gets that first answer, as a claimed request's would;
one that races the first, before its answer is recorded, runs the read again.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.db import db_now
from incidentbot.inbound import KEEP, MAX_KEY, TABLE, Answer, Claim
from incidentbot.inbound_answers import Finishes, answer_rows

_RECORDED = select(TABLE.c.finished_at, TABLE.c.status, TABLE.c.content_type, TABLE.c.body).where(
    TABLE.c.key == bindparam("key")
)


def recorded(engine: Engine, key: str) -> Claim | None:
    """What a request with ``key`` got before (``answered``), or ``running`` while one is
    claimed and unfinished; ``None``: the key is new, run it."""
    with db.read_connection(engine) as conn:
        row = conn.execute(_RECORDED, {"key": key[:MAX_KEY]}).first()
    if row is None:
        return None
    finished_at, status, content_type, body = row
    if finished_at is None:
        return Claim("running")
    if status is None:
        return Claim("answered", Answer(200, None, ""))
    return Claim("answered", Answer(status, content_type, body or ""))


def record_many(engine: Engine, answers: Sequence[tuple[str, Answer | None]]) -> None:
    """Record reads' answers in one transaction, each unless its key is known by now (then the
    first one stays); the claims older than :data:`~incidentbot.inbound.KEEP` go."""
    if not answers:
        return
    with db.transaction(engine) as s:
        now = db_now(s)
        conn = s.connection()
        rows = answer_rows(answers, now)
        new = pg_insert(TABLE) if conn.dialect.name == "postgresql" else sqlite_insert(TABLE)
        stmt = new.values(
            key=bindparam("k"),
            claimed_at=bindparam("at"),
            finished_at=bindparam("at"),
            status=bindparam("st"),
            content_type=bindparam("ct"),
            body=bindparam("bd"),
        ).on_conflict_do_nothing(index_elements=["key"])
        conn.execute(stmt, rows)
        conn.execute(delete(TABLE).where(TABLE.c.claimed_at < now - KEEP))


class Recordings(Finishes):
    """:class:`~incidentbot.inbound_answers.Finishes` for reads: their answers are recorded, not
    finished (no claim was written for them)."""

    def _write(self, batch: Sequence[tuple[str, Answer | None]]) -> None:
        record_many(self._engine, batch)
