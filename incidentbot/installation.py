"""This installation's identity: a random id made once, the first time a database is used.

Two installations can share a Slack workspace (staging and production, or a database rebuilt
from empty beside the old one). Incident numbers then repeat (both have an INC-1), so whatever
the bot later finds again in Slack by an id of its own making (the digest announcement, the
header, a status update, the channel's marker) carries this id too: one installation never
adopts or edits another's messages or channels.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Column
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

from incidentbot import db
from incidentbot.clock import utcnow
from incidentbot.db import UTCDateTime

ID_LENGTH = 8  # hex characters: 32 random bits; short, since it goes into Slack block ids


class Installation(SQLModel, table=True):
    """One row: the id every Slack lookup of this installation's own messages carries."""

    __tablename__ = "installation"
    # Always 1: the primary key lets exactly one row exist, whoever inserts first.
    one: int = Field(default=1, primary_key=True)
    id: str = Field(max_length=32)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


def installation_id(engine: Engine) -> str:
    """The id, made on first use. Two processes racing to make it agree on the first one
    committed (the loser's insert fails on the one-row rule and it reads the winner's)."""
    with db.transaction(engine) as s:
        found = _read(s)
    if found:
        return found
    try:
        with db.transaction(engine) as s:
            found = _read(s)  # inside the write transaction: another process may have won
            if found:
                return found
            s.add(Installation(id=secrets.token_hex(ID_LENGTH // 2), created_at=utcnow()))
    except IntegrityError:
        pass
    with db.transaction(engine) as s:
        found = _read(s)
    assert found, "the installation id was neither read nor made"
    return found


def _read(session: Session) -> str | None:
    row = session.get(Installation, 1)
    return row.id if row else None
