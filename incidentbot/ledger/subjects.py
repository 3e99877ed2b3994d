"""What a run is for, as the ledger sees it: an opaque subject id (the ``incident_id`` column).

The ledger knows nothing about incidents. It only needs to check that a subject exists before a
run is started for it, and to name it in a message (\"locked by run 7 for INC-3\"). The package
that owns the subjects installs a :data:`Describe` function here (the incidents package does so
when it is imported); without one a subject is named by its id and its existence is left to the
database's foreign key.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

# (session, subject id) -> how people call it (e.g. "INC-3"), or None if there is no such subject.
Describe = Callable[[Session, int], str | None]


def _by_id(_session: Session, subject_id: int) -> str | None:
    return f"incident #{subject_id}"


_describe: Describe = _by_id


def install(describe: Describe) -> None:
    """Name (and check) subjects with ``describe`` from now on."""
    global _describe
    _describe = describe


def describe(session: Session, subject_id: int) -> str | None:
    return _describe(session, subject_id)
