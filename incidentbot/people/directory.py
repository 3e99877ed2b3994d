"""One person per human, whichever tool they came through.

Actors and owners are stored as they came: Slack user ids (``U0123ABCD``, sometimes
``slack:U0123ABCD`` from buttons), CLI users (``bob``), GitHub logins (``github:bob-ok``), bot
actors (``incidentbot``, ``alertmanager``). :class:`Directory` resolves any of them to a
:class:`Someone` from two sources: the ``people`` settings (what Slack cannot tell: CLI users,
GitHub logins, people outside Slack) and the :class:`~incidentbot.people.models.Person` rows the
bot cached from Slack. The two are joined on the Slack id or the email, so the CLI user ``bob``,
the Slack user ``U0N581U33XT`` (real name Bob Okafor) and the PagerDuty user with Bob's email
are one person.

A directory is loaded for the actors an output shows (:meth:`Directory.load`), never for the
whole table, so the cost of an output does not grow with everyone the bot ever met.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import Session, col, or_, select

from incidentbot.people.config import PersonEntry
from incidentbot.people.models import Person

_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
GITHUB_PREFIX = "github:"


def plain_id(actor: str | None) -> str:
    """``slack:U123`` → ``U123``; anything else as it is (stripped)."""
    return (actor or "").strip().removeprefix("slack:")


def is_slack_id(actor: str | None) -> bool:
    return bool(_SLACK_ID.match(plain_id(actor)))


@dataclass(frozen=True)
class Someone:
    """A person as the directory knows them: a name and the identities that stand for them."""

    name: str
    slack_id: str | None = None
    email: str | None = None
    github: str | None = None
    cli: tuple[str, ...] = ()
    # Slack's handle (``bob``): matches what people type, never shown instead of ``name``.
    handle: str | None = None

    @property
    def key(self) -> str:
        """The same string for the same human, whatever identity they came through."""
        return self.slack_id or f"person:{self.name.lower()}"


def _row_name(row: Person) -> str:
    return (row.real_name or "").strip() or row.name


@dataclass
class Directory:
    """Configured people and cached Slack users, joined; see the module docstring."""

    configured: Sequence[PersonEntry] = ()
    rows: dict[str, Person] = field(default_factory=dict)

    @classmethod
    def load(
        cls, session: Session, configured: Sequence[PersonEntry], actors: Iterable[str | None]
    ) -> Directory:
        """The directory for these actors: the cached Slack users among them (by id, handle
        or email), and those of the configured people."""
        wanted = {plain_id(a) for a in actors if a and plain_id(a)}
        ids = {a for a in wanted if is_slack_id(a)} | {e.slack for e in configured if e.slack}
        words = {a.lower() for a in wanted if not is_slack_id(a)}
        emails = {e.email.lower() for e in configured if e.email}
        rows: dict[str, Person] = {}
        ids_list, words_list = sorted(ids), sorted(words | emails)
        for start in range(0, max(len(ids_list), len(words_list)), 400):
            part_ids = ids_list[start : start + 400]
            part_words = words_list[start : start + 400]
            query = select(Person).where(
                or_(
                    col(Person.user_id).in_(part_ids),
                    func.lower(col(Person.name)).in_(part_words),
                    func.lower(col(Person.email)).in_(part_words),
                )
            )
            for row in session.exec(query):
                rows[row.user_id] = row
        return cls(configured=tuple(configured), rows=rows)

    # -- resolving ------------------------------------------------------------------------

    def _entry(self, entry: PersonEntry) -> Someone:
        row = self.rows.get(entry.slack) if entry.slack else None
        if row is None and entry.email:
            row = self._row_by_email(entry.email)
        return Someone(
            name=entry.name,
            slack_id=entry.slack or (row.user_id if row else None),
            email=entry.email or (row.email if row else None),
            github=entry.github,
            cli=tuple(entry.cli),
            handle=row.name if row else None,
        )

    def _row(self, row: Person) -> Someone:
        for entry in self.configured:
            if entry.slack == row.user_id or (
                entry.email and row.email and entry.email.lower() == row.email.lower()
            ):
                return self._entry(entry)
        return Someone(name=_row_name(row), slack_id=row.user_id, email=row.email, handle=row.name)

    def _row_by_email(self, email: str) -> Person | None:
        found = [r for r in self.rows.values() if r.email and r.email.lower() == email.lower()]
        return found[0] if len(found) == 1 else None

    def find(self, actor: str | None) -> Someone | None:
        """The person this actor stands for, or None when nobody here is known by it."""
        who = plain_id(actor)
        if not who:
            return None
        if is_slack_id(who):
            row = self.rows.get(who)
            if row is not None:
                return self._row(row)
            entry = next((e for e in self.configured if e.slack == who), None)
            return self._entry(entry) if entry else None
        if who.lower().startswith(GITHUB_PREFIX):
            return self.by_github(who[len(GITHUB_PREFIX) :])
        low = who.lower()
        for entry in self.configured:
            if who in entry.cli or low in {entry.name.lower(), (entry.email or "").lower()}:
                return self._entry(entry)
        matches = [
            r
            for r in self.rows.values()
            if low in {r.name.lower(), (r.email or "").lower(), (r.real_name or "").lower()}
        ]
        return self._row(matches[0]) if len(matches) == 1 else None

    def by_email(self, email: str | None) -> Someone | None:
        """The person with this email (how a PagerDuty user is matched)."""
        if not email:
            return None
        low = email.strip().lower()
        for entry in self.configured:
            if entry.email and entry.email.lower() == low:
                return self._entry(entry)
        row = self._row_by_email(low)
        return self._row(row) if row is not None else None

    def by_github(self, login: str | None) -> Someone | None:
        low = (login or "").strip().removeprefix("@").lower()
        for entry in self.configured:
            if low and entry.github and entry.github.lower() == low:
                return self._entry(entry)
        return None

    def by_cli(self, user: str | None) -> Someone | None:
        who = (user or "").strip()
        for entry in self.configured:
            if who and who in entry.cli:
                return self._entry(entry)
        return None

    # -- what outputs use -----------------------------------------------------------------

    def name(self, actor: str | None) -> str:
        """The person's name; an actor nobody here knows as it is stored (``slack:`` cut)."""
        someone = self.find(actor)
        if someone is not None:
            return someone.name
        return plain_id(actor) or "nobody"

    __call__ = name

    def slack_id(self, actor: str | None) -> str | None:
        """The Slack user id the actor stands for, if Slack knows them."""
        someone = self.find(actor)
        if someone is not None:
            return someone.slack_id
        who = plain_id(actor)
        return who if is_slack_id(who) else None

    def key(self, actor: str | None) -> str:
        """One string per human (for grouping, e.g. action items by owner)."""
        someone = self.find(actor)
        return someone.key if someone is not None else plain_id(actor)

    def known_names(self) -> list[str]:
        """Every name (full and first) of the people loaded here: what the language check of
        a postmortem looks for next to a failure."""
        out: set[str] = set()
        names = [e.name for e in self.configured]
        for row in self.rows.values():
            names += [row.name, row.real_name or ""]
        for name in names:
            name = name.strip()
            if name:
                out.add(name)
                first = name.split()[0]
                if len(first) >= 3:
                    out.add(first)
        return sorted(out)
