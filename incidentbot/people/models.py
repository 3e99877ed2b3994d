"""The table of people the bot has met on the chat platform: one row per Slack user, cached.

A row is what Slack said about a user when the bot last asked (``users.info``); it is asked
once, when the user is first seen, and again only after :data:`incidentbot.people.lookup.FRESH`.
People who never used Slack (a CLI user, a GitHub login, a PagerDuty user) come from the
``people`` list in the settings instead; :class:`incidentbot.people.directory.Directory` joins
the two into one person per human.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from incidentbot.db import UTCDateTime


class Person(SQLModel, table=True):
    """A chat user as last seen: outputs name people, not ids."""

    __tablename__ = "person"

    user_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    real_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
