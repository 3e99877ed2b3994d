"""People's names for documents: the Person table, filled from the chat platform by the bot.

Actors are stored as they came: Slack user ids (``U0123ABCD``, sometimes ``slack:U0123ABCD``
from buttons) or plain names from the CLI (``alice``). A document shows the name a Slack id
stands for when it is known, else the id as it is; :func:`plain_text` writes Slack's markup
that way, mentions as names.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from incidentbot import db
from incidentbot.chat_text import is_slack_id, plain_id
from incidentbot.ports import Chat, ExternalError
from incidentbot.postmortems.models import Person

log = logging.getLogger(__name__)

BOT_ACTORS = frozenset({"incidentbot"})
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


def display(person: Person) -> str:
    return (person.real_name or "").strip() or person.name


class Names:
    """Display names by actor, from the Person table; unknown actors show as they are."""

    def __init__(self, people: dict[str, Person] | None = None):
        self.people = dict(people or {})

    @classmethod
    def load(cls, session: Session, actors: Iterable[str | None]) -> Names:
        ids = sorted({plain_id(a) for a in actors if a and is_slack_id(a)})
        people: dict[str, Person] = {}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            for person in session.exec(select(Person).where(col(Person.user_id).in_(part))):
                people[person.user_id] = person
        return cls(people)

    def __call__(self, actor: str | None) -> str:
        who = plain_id(actor)
        if not who:
            return "nobody"
        person = self.people.get(who)
        return display(person) if person is not None else who

    def known_names(self) -> list[str]:
        """Every name and real name the table knows for the people here (for the language
        check): full names and first names."""
        out: set[str] = set()
        for person in self.people.values():
            for name in (person.name, person.real_name):
                if name and name.strip():
                    out.add(name.strip())
                    first = name.strip().split()[0]
                    if len(first) >= 3:
                        out.add(first)
        return sorted(out)


_ANGLE = re.compile(r"<([^<>]+)>")


def plain_text(text: str, names: Names, ids: re.Pattern[str] | None = None) -> str:
    """Slack's markup as people read it: mentions as ``@Name``, channels as ``#name``, links
    as ``label (url)``; ``&lt;`` and friends unescaped. Bare user ids we know become names."""

    def angle(m: re.Match[str]) -> str:
        inner = m.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@") and is_slack_id(target[1:]):
            return "@" + names(target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!subteam^"):
            return label if label.startswith("@") else "@" + (label or target[9:])
        if target.startswith("!"):
            return "@" + target[1:]
        if re.match(r"^(https?|mailto):", target):
            return f"{label} ({target})" if label and label != target else target
        return m.group(0)

    out = _ANGLE.sub(angle, text) if "<" in text else text
    if ids is not None and ("U" in out or "W" in out):  # Slack user ids start with U or W
        out = ids.sub(lambda m: names(m.group(0)), out)
    return html.unescape(out) if "&" in out else out


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

    Bounded (at most ``limit`` lookups within ``budget`` seconds) because a slash command must
    be answered within three seconds; whoever is left keeps their stored name, else their id.
    A lookup that fails is logged and skipped. Returns how many people were updated."""
    ids = sorted({plain_id(a) for a in actors if a and is_slack_id(a)})
    if not ids:
        return 0
    with db.transaction(engine) as s:
        known = {
            p.user_id: p.updated_at
            for p in s.exec(select(Person).where(col(Person.user_id).in_(ids)))
        }
    stale = [i for i in ids if i not in known or now - known[i] > FRESH]
    started = time.monotonic()
    updated = 0
    for user_id in stale[:limit]:
        if time.monotonic() - started > budget:
            break
        try:
            info = chat.user_info(user_id)
        except ExternalError as exc:
            log.info("users.info %s failed: %s", user_id, exc)
            continue
        if info is None:
            continue
        with db.transaction(engine) as s:
            remember(s, user_id, info.name, info.real_name, info.email, now=now)
        updated += 1
    return updated
