"""The objects a Slack workspace holds, and how each one looks on the wire.

Each ``to_api`` method produces the object exactly as the Web API returns it, shaped to pass
the vendor's schemas in ``slack_web_openapi_v2.json`` (``objs_user``, ``objs_conversation``,
``objs_message``, ``objs_subteam``). Keeping the wire shape next to the data keeps every method
that returns a channel or a message consistent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


class SlackError(Exception):
    """A Web API error: answered as ``{"ok": false, "error": code, ...extra}`` with HTTP 200."""

    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


@dataclass
class User:
    """A workspace member (human or the bot user)."""

    id: str
    name: str
    real_name: str
    display_name: str
    email: str | None
    team_id: str
    is_bot: bool = False
    bot_id: str | None = None
    app_id: str | None = None
    is_admin: bool = False
    title: str = ""
    tz: str = "Europe/Berlin"
    tz_offset: int = 3600
    updated: int = 1_700_000_000

    @property
    def shown_name(self) -> str:
        """The name Slack's clients show next to a message: display name, else real name."""
        return self.display_name or self.real_name or self.name

    def to_api(self) -> dict[str, Any]:
        """The ``objs_user`` wire shape."""
        first, _, last = self.real_name.partition(" ")
        avatar = hashlib.sha256(self.id.encode()).hexdigest()[:12]
        image = f"https://avatars.sandbox.invalid/{self.id}"
        profile: dict[str, Any] = {
            "title": self.title,
            "phone": "",
            "skype": "",
            "real_name": self.real_name,
            "real_name_normalized": self.real_name,
            "display_name": self.display_name,
            "display_name_normalized": self.display_name,
            "fields": {},
            "status_text": "",
            "status_emoji": "",
            "status_expiration": 0,
            "avatar_hash": avatar,
            "first_name": first,
            "last_name": last,
            "image_24": f"{image}_24.png",
            "image_48": f"{image}_48.png",
            "image_72": f"{image}_72.png",
            "team": self.team_id,
        }
        if self.email is not None:
            profile["email"] = self.email
        if self.is_bot:
            profile["bot_id"] = self.bot_id
            profile["api_app_id"] = self.app_id
            profile["always_active"] = True
        return {
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "deleted": False,
            "color": "9f69e7",
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": "Central European Time",
            "tz_offset": self.tz_offset,
            "profile": profile,
            "is_admin": self.is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": self.updated,
        }


@dataclass
class TopicOrPurpose:
    """A channel topic or purpose, with who set it and when."""

    value: str = ""
    creator: str = ""
    last_set: int = 0

    def to_api(self) -> dict[str, Any]:
        return {"value": self.value, "creator": self.creator, "last_set": self.last_set}


@dataclass
class Message:
    """A message in a channel (or a DM), with what has happened to it since."""

    ts: str
    user: str
    text: str
    team_id: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None
    bot_id: str | None = None
    edits: int = 0
    pinned: bool = False
    reactions: dict[str, list[str]] = field(default_factory=dict)
    via: str = "chat.postMessage"

    def to_api(self, channel_id: str, bot_profile: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``objs_message`` wire shape.

        ``edited`` is left out because the vendor schema forbids it; legacy attachments are
        reduced to ``id`` and ``fallback`` for the same reason.
        """
        out: dict[str, Any] = {
            "type": "message",
            "ts": self.ts,
            "user": self.user,
            "text": self.text,
            "team": self.team_id,
        }
        if self.blocks:
            out["blocks"] = self.blocks
        if self.attachments:
            out["attachments"] = [
                {"id": n, "fallback": str(a.get("fallback") or a.get("text") or "")}
                for n, a in enumerate(self.attachments, start=1)
            ]
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.bot_id:
            out["bot_id"] = self.bot_id
            if bot_profile is not None:
                out["bot_profile"] = bot_profile
        if self.pinned:
            out["pinned_to"] = [channel_id]
        if self.reactions:
            out["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in self.reactions.items()
            ]
        return out


@dataclass
class Channel:
    """A public or private channel, or a direct message with the bot (``is_im``)."""

    id: str
    name: str
    creator: str
    created: int
    is_private: bool = False
    is_im: bool = False
    is_general: bool = False
    is_archived: bool = False
    members: list[str] = field(default_factory=list)
    topic: TopicOrPurpose = field(default_factory=TopicOrPurpose)
    purpose: TopicOrPurpose = field(default_factory=TopicOrPurpose)
    messages: list[Message] = field(default_factory=list)
    im_user: str | None = None
    previous_names: list[str] = field(default_factory=list)

    def message(self, ts: str) -> Message | None:
        """The message with this ``ts``, if the channel has one."""
        for msg in self.messages:
            if msg.ts == ts:
                return msg
        return None

    def to_api(self, viewer: str) -> dict[str, Any]:
        """The ``objs_conversation`` wire shape, as ``viewer`` sees it (``is_member``)."""
        if self.is_im:
            return {
                "id": self.id,
                "created": self.created,
                "is_im": True,
                "is_org_shared": False,
                "user": self.im_user,
                "priority": 0,
                "is_user_deleted": False,
                "is_archived": False,
            }
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "created": self.created,
            "creator": self.creator,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_general": self.is_general,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_pending_ext_shared": False,
            "is_member": viewer in self.members,
            "unlinked": 0,
            "num_members": len(self.members),
            "previous_names": list(self.previous_names),
            "topic": self.topic.to_api(),
            "purpose": self.purpose.to_api(),
        }


@dataclass
class UserGroup:
    """A user group such as ``@oncall-rpc`` (Slack calls them subteams, ids ``S…``)."""

    id: str
    handle: str
    name: str
    description: str
    team_id: str
    created_by: str
    users: list[str] = field(default_factory=list)
    date_create: int = 1_700_000_000

    def to_api(self, include_users: bool, include_count: bool) -> dict[str, Any]:
        """The ``objs_subteam`` wire shape."""
        out: dict[str, Any] = {
            "id": self.id,
            "team_id": self.team_id,
            "is_usergroup": True,
            "is_subteam": True,
            "name": self.name,
            "description": self.description,
            "handle": self.handle,
            "is_external": False,
            "date_create": self.date_create,
            "date_update": self.date_create,
            "date_delete": 0,
            "auto_type": None,
            "auto_provision": False,
            "enterprise_subteam_id": "",
            "created_by": self.created_by,
            "updated_by": self.created_by,
            "deleted_by": None,
            "prefs": {"channels": [], "groups": []},
        }
        if include_users:
            out["users"] = list(self.users)
        if include_count:
            out["user_count"] = len(self.users)
        return out


@dataclass
class Ephemeral:
    """A message only one user saw (chat.postEphemeral, a response_url post, an ack body)."""

    seq: int
    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]]
    ts: str
    via: str
    deleted: bool = False
    replaced: int = 0


@dataclass
class Bookmark:
    """A link bookmarked in a channel's header (``bookmarks.add``)."""

    id: str
    channel_id: str
    title: str
    link: str
    emoji: str
    created: int
    created_by: str
    app_id: str | None

    def to_api(self, team_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel_id": self.channel_id,
            "title": self.title,
            "link": self.link,
            "emoji": self.emoji,
            "icon_url": None,
            "type": "link",
            "entity_id": None,
            "date_created": self.created,
            "date_updated": self.created,
            "rank": "U",
            "last_updated_by_user_id": self.created_by,
            "last_updated_by_team_id": team_id,
            "shortcut_id": None,
            "app_id": self.app_id,
        }


@dataclass
class OpenView:
    """A modal a user has open: the view as sent, plus the ids and hash Slack adds."""

    id: str
    user: str
    data: dict[str, Any]
    hash: str
    root_view_id: str
    previous_view_id: str | None
    team_id: str
    app_id: str | None
    bot_id: str | None
    external_id: str = ""
    is_open: bool = True
    errors: dict[str, str] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        """The view object as views.open / views.update / view_submission carry it."""
        out = dict(self.data)
        out.update(
            {
                "id": self.id,
                "team_id": self.team_id,
                "app_id": self.app_id,
                "bot_id": self.bot_id,
                "hash": self.hash,
                "root_view_id": self.root_view_id,
                "previous_view_id": self.previous_view_id,
                "external_id": self.external_id,
                "private_metadata": self.data.get("private_metadata", ""),
                "callback_id": self.data.get("callback_id", ""),
                "state": {"values": {}},
            }
        )
        return out


@dataclass
class Trigger:
    """A ``trigger_id`` handed to the bot with an interaction; usable once, for 3 seconds."""

    id: str
    user: str
    issued_at: float
    used: bool = False
