"""Filling the directory from Slack: each user is looked up once, when first seen, then cached.

The bot sees Slack users in commands, button clicks and events. It must not call Slack on the
path Slack waits for (three seconds for a slash command), so :class:`Sightings` takes the ids
seen and looks them up on its own thread; a user already cached and fresh costs one indexed
read, and nothing at all once this process has checked them. :func:`refresh` is the same
lookup done in place, bounded, for a job that already runs in the background (a postmortem).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from incidentbot import db
from incidentbot.clock import utcnow
from incidentbot.people.directory import is_slack_id, plain_id
from incidentbot.people.models import Person
from incidentbot.ports import Chat, ExternalError

log = logging.getLogger(__name__)

# How long a name read from Slack is trusted before the bot asks again.
FRESH = timedelta(days=1)


def as_user(session: Session, who: str | None) -> str | None:
    """The Slack user id for what someone typed (``@bob``, ``Bob Okafor``, ``bob@…``) when the
    person table knows exactly one such user; otherwise the text as typed."""
    if who is None:
        return None
    text = who.strip().removeprefix("@")
    if not text or is_slack_id(text):
        return text or who
    low = text.lower()
    found = {
        p.user_id
        for p in session.exec(select(Person))
        if low in {(p.name or "").lower(), (p.real_name or "").lower(), (p.email or "").lower()}
    }
    return found.pop() if len(found) == 1 else text


def remember(
    session: Session,
    user_id: str,
    name: str,
    real_name: str | None,
    email: str | None,
    *,
    now: datetime,
) -> Person:
    """Insert or update one person (as last seen on the chat platform)."""
    person = session.get(Person, user_id)
    if person is None:
        person = Person(user_id=user_id, name=name, updated_at=now)
    person.name = name[:200]
    person.real_name = (real_name or "")[:200] or None
    person.email = (email or "")[:320] or None
    person.updated_at = now
    session.add(person)
    return person


def stale(engine: Engine, actors: Iterable[str | None], *, now: datetime) -> list[str]:
    """The Slack ids among ``actors`` never looked up, or looked up longer than FRESH ago."""
    ids = sorted({plain_id(a) for a in actors if a and is_slack_id(a)})
    if not ids:
        return []
    with db.transaction(engine) as s:
        known = {
            p.user_id: p.updated_at
            for p in s.exec(select(Person).where(col(Person.user_id).in_(ids)))
        }
    return [i for i in ids if i not in known or now - known[i] > FRESH]


def look_up(engine: Engine, chat: Chat, user_id: str, *, now: datetime) -> bool:
    """Ask Slack about one user and cache the answer; False when Slack could not say."""
    try:
        info = chat.user_info(user_id)
    except ExternalError as exc:
        log.info("users.info %s failed: %s", user_id, exc)
        return False
    if info is None:
        return False
    with db.transaction(engine) as s:
        remember(s, user_id, info.name, info.real_name, info.email, now=now)
    return True


def refresh(
    engine: Engine,
    chat: Chat,
    actors: Iterable[str | None],
    *,
    now: datetime,
    budget: float = 1.5,
    limit: int = 25,
) -> int:
    """Ask the chat platform about the Slack ids here whose names are unknown or stale.

    Bounded (at most ``limit`` lookups within ``budget`` seconds); whoever is left keeps their
    stored name, else their id. A lookup that fails is logged and skipped. Returns how many
    people were updated."""
    started = time.monotonic()
    updated = 0
    for user_id in stale(engine, actors, now=now)[:limit]:
        if time.monotonic() - started > budget:
            break
        updated += look_up(engine, chat, user_id, now=now)
    return updated


# How long a lookup defers to requests in flight before it runs anyway (never starved).
DEFER = 2.0


class Sightings:
    """Records the Slack users the bot sees, off the request path: :meth:`saw` only queues the
    ids; one thread looks up those not cached (or stale) and caches them. Each id is checked
    at most once per FRESH period by this process, so later sightings cost nothing. While a
    request is being answered (:meth:`answering`) the thread waits, so a lookup takes neither
    the CPU nor the database from what Slack waits for."""

    def __init__(
        self, engine: Engine, chat: Chat, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.engine, self.chat, self.clock = engine, chat, clock
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._checked: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._answering = 0
        self._thread: threading.Thread | None = None

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around the work of one request: lookups wait until no request is in flight."""
        with self._lock:
            self._answering += 1
        try:
            yield
        finally:
            with self._lock:
                self._answering -= 1
                if self._answering == 0:
                    self._idle.notify_all()

    def saw(self, *actors: str | None) -> None:
        now = self.clock()
        with self._lock:
            for actor in actors:
                who = plain_id(actor)
                if not is_slack_id(who):
                    continue
                last = self._checked.get(who)
                if last is not None and now - last <= FRESH:
                    continue
                self._checked[who] = now
                self._queue.put(who)
            if self._thread is None and not self._queue.empty():
                self._thread = threading.Thread(target=self._run, name="people-lookup", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            who = self._queue.get()
            try:
                if who is None:
                    return
                with self._lock:
                    self._idle.wait_for(lambda: self._answering == 0, timeout=DEFER)
                now = self.clock()
                if stale(self.engine, [who], now=now):
                    look_up(self.engine, self.chat, who, now=now)
            except Exception:  # a lookup never takes the bot down; the next sighting retries
                log.exception("looking up Slack user %s failed", who)
                with self._lock:
                    self._checked.pop(who or "", None)
            finally:
                self._queue.task_done()

    def wait(self) -> None:
        """Block until every queued lookup is done (shutdown, and tests)."""
        self._queue.join()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()
