"""Storing the answers Slack requests got, so a replay or a retry is answered with the first
answer (:mod:`incidentbot.inbound`): one request's answer (:func:`finish`), several in one
transaction (:func:`finish_many`), or queued and stored off the answer path (:class:`Finishes`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.db import db_now
from incidentbot.inbound import MAX_KEY, MAX_STORED_BODY, TABLE, Answer

log = logging.getLogger(__name__)


def answer_rows(
    answers: Sequence[tuple[str, Answer | None]], now: datetime
) -> list[dict[str, Any]]:
    """The parameters storing ``answers`` at ``now`` (``k`` key, ``at`` time, ``st`` status,
    ``ct`` content type, ``bd`` body): an answer too long to keep is stored as none."""
    rows = []
    for key, answer in answers:
        kept = answer if answer is not None and len(answer.body) <= MAX_STORED_BODY else None
        rows.append(
            {
                "k": key[:MAX_KEY],
                "at": now,
                "st": kept.status if kept else None,
                "ct": kept.content_type if kept else None,
                "bd": kept.body if kept else None,
            }
        )
    return rows


def finish(engine: Engine, key: str, answer: Answer | None) -> None:
    """Store the answer the first request got (``None``: it failed; a replay gets an empty
    acknowledgement rather than running again)."""
    finish_many(engine, [(key, answer)])


def finish_many(engine: Engine, answers: Sequence[tuple[str, Answer | None]]) -> None:
    """Store several requests' answers in one transaction (a claim pruned meanwhile is
    skipped: nothing to replay)."""
    if not answers:
        return
    with db.transaction(engine) as s:
        now = db_now(s)
        rows = answer_rows(answers, now)
        s.connection().execute(
            update(TABLE)
            .where(TABLE.c.key == bindparam("k"))
            .values(
                finished_at=bindparam("at"),
                status=bindparam("st"),
                content_type=bindparam("ct"),
                body=bindparam("bd"),
            ),
            rows,
        )


class Finishes:
    """The answers of requests that ran, stored after they are sent, off the answer path.

    Storing an answer is one more write while Slack waits; here it is queued instead, and a
    thread of its own stores every queued answer in one transaction. Until it is stored, a
    replay that reaches this process gets the answer from memory (:meth:`pending`); one that
    reaches another replica meanwhile gets an empty acknowledgement, as while the first runs.
    If the process dies first, the claim is taken over after
    :data:`~incidentbot.inbound.TAKEOVER`, as it is when a process dies while the request runs.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Condition()
        self._queued: dict[str, Answer | None] = {}
        self._storing: dict[str, Answer | None] = {}
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, key: str, answer: Answer | None) -> None:
        with self._lock:
            if self._closed:
                pass
            elif self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="inbound-answers", daemon=True
                )
                self._thread.start()
            self._queued[key] = answer
            self._lock.notify()
        if self._closed:  # stopping: store it here and now
            self._store()

    def pending(self, key: str) -> tuple[bool, Answer | None]:
        """(True, the answer) while ``key``'s answer waits to be stored; else (False, None)."""
        with self._lock:
            for waiting in (self._queued, self._storing):
                if key in waiting:
                    return True, waiting[key]
        return False, None

    def close(self) -> None:
        """Store what is queued and stop the thread (later answers are stored at once)."""
        with self._lock:
            self._closed = True
            self._lock.notify()
            thread = self._thread
        if thread is not None:
            thread.join(30)
        self._store()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queued and not self._closed:
                    self._lock.wait()
                if self._closed and not self._queued:
                    return
            self._store()

    def _write(self, batch: Sequence[tuple[str, Answer | None]]) -> None:
        finish_many(self._engine, batch)

    def _store(self) -> None:
        with self._lock:
            if not self._queued:
                return
            self._storing, self._queued = self._queued, {}
            batch = list(self._storing.items())
        try:
            self._write(batch)
        except Exception as exc:  # the claims stay unfinished: replays wait, then take over
            # Not the statement: its parameters are the answers people were sent.
            reason = getattr(exc, "orig", None) or type(exc).__name__
            log.error("could not store the answers of %d requests: %s", len(batch), reason)
        finally:
            with self._lock:
                self._storing = {}
