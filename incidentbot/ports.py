"""Ports: how the core reaches the outside world without importing any vendor's SDK.

Adapters (``incidentbot.slack.chat`` for Slack, the sandbox for tests and the demo) implement
these protocols; the core's durable flows call them from ledger steps. Errors are reported as
:class:`ExternalError` so the ledger can tell a retryable failure (a 429, a 5xx, a timeout) from
one that retrying cannot fix (an invalid argument).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class ExternalError(Exception):
    """A call to an outside service failed.

    ``code`` is the service's own error name (``ratelimited``, ``name_taken``, ``http_500``),
    ``retryable`` says whether trying again later may succeed, ``retry_after`` (seconds) is the
    service's own hint.
    """

    def __init__(
        self, code: str, message: str = "", *, retryable: bool, retry_after: float | None = None
    ):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class ChannelInfo:
    id: str
    name: str
    purpose: str = ""
    archived: bool = False
    creator: str | None = None


@dataclass(frozen=True)
class UserInfo:
    """A chat user as the platform describes them."""

    id: str
    name: str
    real_name: str | None = None
    email: str | None = None
    deleted: bool = False
    is_bot: bool = False


class Chat(Protocol):
    """What incident flows need from a chat platform."""

    def find_channel(self, name: str) -> ChannelInfo | None: ...

    def create_channel(self, name: str, *, private: bool = False) -> ChannelInfo:
        """Create a public (or private) channel; ``ExternalError('name_taken')`` when the name
        is used."""
        ...

    def rename_channel(self, channel_id: str, name: str) -> ChannelInfo:
        """Rename a channel the bot created; ``ExternalError('name_taken')`` when the name is
        used by another channel (the name it already has is not an error)."""
        ...

    def set_topic(self, channel_id: str, topic: str) -> None: ...

    def set_purpose(self, channel_id: str, purpose: str) -> None: ...

    def invite(
        self, channel_id: str, user_ids: list[str], *, read_members: bool = True
    ) -> list[str]:
        """Invite users; return those newly invited (already members are not an error).
        ``read_members=False``: a new channel, invite without reading its members first (one
        call; when someone is a member after all, read them and invite the rest)."""
        ...

    def usergroup_members(self, group_id: str) -> list[str]: ...

    def channel_members(self, channel_id: str) -> list[str]: ...

    def find_message(
        self, channel_id: str, block_id: str, *, since: datetime | None = None
    ) -> str | None:
        """The ``ts`` of the bot's own message carrying ``block_id`` posted since ``since``
        (or recently), if any."""
        ...

    def post(self, channel_id: str, text: str, blocks: list[dict[str, Any]]) -> str: ...

    def archive_channel(self, channel_id: str) -> None:
        """Archive a channel; already archived is not an error."""
        ...

    def update(self, channel_id: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None: ...

    def pin(self, channel_id: str, ts: str) -> None:
        """Pin a message; already pinned is not an error."""
        ...

    def post_ephemeral(
        self, channel_id: str, user_id: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None: ...

    def permalink(self, channel_id: str, ts: str) -> str | None: ...

    def open_dm(self, user_id: str) -> str:
        """The id of the bot's direct-message channel with ``user_id``."""
        ...

    def user_info(self, user_id: str) -> UserInfo | None:
        """The user, or None when there is no such user (other failures raise)."""
        ...

    def user_by_email(self, email: str) -> UserInfo | None:
        """The user with this email, or None when nobody has it (other failures raise)."""
        ...


@dataclass(frozen=True)
class PageInfo:
    """A page as the paging service knows it."""

    id: str
    number: int | None
    url: str | None
    status: str  # triggered, acknowledged, resolved
    service_id: str | None = None
    # PagerDuty's incident key (ours: the page's key; an integration's: its dedup key).
    key: str | None = None


@dataclass(frozen=True)
class OnCall:
    name: str
    email: str | None
    level: int
    start: datetime | None
    end: datetime | None
    schedule: str | None = None


class Pager(Protocol):
    """What incident flows need from a paging service."""

    def trigger(
        self,
        *,
        service_id: str,
        escalation_policy_id: str | None,
        key: str,
        title: str,
        details: str,
        routing_key: str | None = None,
    ) -> PageInfo:
        """Open a page; with a ``key`` already open, return that page instead of a second.
        With a ``routing_key`` the page goes through the Events API (``key`` is its dedup_key).
        """
        ...

    def find(self, key: str) -> PageInfo | None: ...

    def get(self, ref: str) -> PageInfo:
        """A page by its id or number; ``ExternalError`` if there is none."""
        ...

    def resolve(self, page_id: str) -> PageInfo: ...

    def add_note(self, page_id: str, text: str) -> None: ...

    def oncalls(
        self,
        escalation_policy_ids: list[str],
        *,
        since: datetime,
        until: datetime,
        schedule_ids: list[str] | None = None,
    ) -> list[OnCall]:
        """On-call rows overlapping ``[since, until]`` for the policies (all when empty),
        narrowed to ``schedule_ids`` when given."""
        ...
