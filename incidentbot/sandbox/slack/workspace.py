"""The in-memory Slack workspace: users, channels, messages, user groups, views, triggers.

One re-entrant lock guards everything. Web API calls arrive on the server's event loop while
tests and the driver read and act from other threads; every public method takes the lock, and
callers that need several steps to be atomic hold ``workspace.lock`` themselves.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from incidentbot.sandbox.slack.ids import IdFactory, TsClock
from incidentbot.sandbox.slack.models import (
    Bookmark,
    Channel,
    Ephemeral,
    Message,
    OpenView,
    SlackError,
    Trigger,
    User,
    UserGroup,
)

CHANNEL_NAME_MAX = 80
TRIGGER_TTL_S = 3.0
_NAME_OK = re.compile(r"^[a-z0-9_-]+$")


def check_channel_name(name: str) -> None:
    """Apply Slack's channel naming rules, raising the error code Slack would answer."""
    if not name:
        raise SlackError("invalid_name_required")
    if len(name) > CHANNEL_NAME_MAX:
        raise SlackError("invalid_name_maxlength")
    if not _NAME_OK.match(name):
        raise SlackError("invalid_name_specials")
    if not any(ch.isalnum() for ch in name):
        raise SlackError("invalid_name_punctuation")


@dataclass(frozen=True)
class SeedUser:
    """A human in the seeded workspace."""

    name: str
    real_name: str
    display_name: str
    title: str
    is_admin: bool = False


SEED_HUMANS: tuple[SeedUser, ...] = (
    SeedUser("alice", "Alice Moreau", "alice", "SRE lead", is_admin=True),
    SeedUser("bob", "Bob Okafor", "bob", "Node operator"),
    SeedUser("carol", "Carol Nguyen", "carol", "RPC platform engineer"),
    SeedUser("dave", "Dave Kim", "dave", "Validator operations"),
    SeedUser("erin", "Erin Schultz", "erin", "Support engineer"),
)
SEED_EMAIL_DOMAIN = "nodeworks.example"


class Workspace:
    """All state of one sandbox workspace; see the module docstring for the locking rule."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-sandbox-bot-token",  # noqa: S107 - accepted only here
        team_name: str = "Nodeworks",
        domain: str = "nodeworks-sandbox",
        seed: bool = True,
        id_seed: int = 7,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.ids = IdFactory(id_seed)
        self._ts = TsClock()
        self.team_id = self.ids.new("T")
        self.team_name = team_name
        self.domain = domain
        self.app_id = self.ids.new("A")
        self.bot_id = self.ids.new("B")
        self.trigger_ttl = TRIGGER_TTL_S
        # Where permalinks point; the server sets it to its own address when it starts.
        self.web_url = f"https://{domain}.slack.com"
        self.users: dict[str, User] = {}
        self.channels: dict[str, Channel] = {}
        self.usergroups: dict[str, UserGroup] = {}
        self.views: dict[str, OpenView] = {}
        self.triggers: dict[str, Trigger] = {}
        self.ephemerals: list[Ephemeral] = []
        self.bookmarks: list[Bookmark] = []
        self.tokens: dict[str, str] = {}
        self.bot = self.add_user(
            "incidentbot", "Incident Bot", "", email=None, is_bot=True, title="Incident response"
        )
        self.bot_token = bot_token
        self.tokens[bot_token] = self.bot.id
        if seed:
            self._seed()

    # -- seeding --------------------------------------------------------------------------

    def _seed(self) -> None:
        humans = [
            self.add_user(
                h.name,
                h.real_name,
                h.display_name,
                email=f"{h.name}@{SEED_EMAIL_DOMAIN}",
                title=h.title,
                is_admin=h.is_admin,
            )
            for h in SEED_HUMANS
        ]
        alice = humans[0]
        self.add_channel(
            "general", creator=alice.id, members=[h.id for h in humans], is_general=True
        ).purpose.value = "Company-wide announcements"
        digest = self.add_channel(
            "incidents", creator=alice.id, members=[h.id for h in humans] + [self.bot.id]
        )
        digest.purpose.value = "One message per incident, kept up to date by the bot"
        self.add_usergroup(
            "oncall-rpc",
            "On-call: RPC",
            "Whoever carries the RPC pager this week",
            [self.user("bob").id, self.user("carol").id],
            created_by=alice.id,
        )

    def add_user(
        self,
        name: str,
        real_name: str,
        display_name: str,
        *,
        email: str | None,
        is_bot: bool = False,
        title: str = "",
        is_admin: bool = False,
    ) -> User:
        """Add a member to the workspace (tests use it for extra people)."""
        with self.lock:
            user = User(
                id=self.ids.new("U"),
                name=name,
                real_name=real_name,
                display_name=display_name,
                email=email,
                team_id=self.team_id,
                is_bot=is_bot,
                bot_id=self.bot_id if is_bot else None,
                app_id=self.app_id if is_bot else None,
                is_admin=is_admin,
                title=title,
            )
            self.users[user.id] = user
            return user

    def add_channel(
        self,
        name: str,
        *,
        creator: str,
        members: list[str] | None = None,
        is_private: bool = False,
        is_general: bool = False,
    ) -> Channel:
        """Create a channel directly (seeding, tests); the Web API path adds its own checks."""
        with self.lock:
            check_channel_name(name)
            if self.channel_by_name(name) is not None:
                raise SlackError("name_taken")
            channel = Channel(
                id=self.ids.new("C"),
                name=name,
                creator=creator,
                created=int(self.clock()),
                is_private=is_private,
                is_general=is_general,
                members=list(dict.fromkeys(members or [creator])),
            )
            self.channels[channel.id] = channel
            return channel

    def add_usergroup(
        self, handle: str, name: str, description: str, users: list[str], *, created_by: str
    ) -> UserGroup:
        """Add a user group such as ``@oncall-rpc``."""
        with self.lock:
            group = UserGroup(
                id=self.ids.new("S"),
                handle=handle,
                name=name,
                description=description,
                team_id=self.team_id,
                created_by=created_by,
                users=list(users),
            )
            self.usergroups[group.id] = group
            return group

    # -- lookups ----------------------------------------------------------------------------

    def user(self, ref: str) -> User:
        """A user by id, handle, ``@handle``, display name or email; ``user_not_found``."""
        with self.lock:
            if ref in self.users:
                return self.users[ref]
            key = ref.removeprefix("@").lower()
            for user in self.users.values():
                if key in (user.name, user.display_name.lower(), (user.email or "").lower()):
                    return user
        raise SlackError("user_not_found")

    def channel_by_name(self, name: str) -> Channel | None:
        with self.lock:
            for channel in self.channels.values():
                if channel.name == name and not channel.is_im:
                    return channel
        return None

    def channel(self, ref: str) -> Channel:
        """A channel by id, name or ``#name`` (no visibility check); ``channel_not_found``."""
        with self.lock:
            if ref in self.channels:
                return self.channels[ref]
            found = self.channel_by_name(ref.removeprefix("#"))
        if found is None:
            raise SlackError("channel_not_found")
        return found

    def visible_channel(self, ref: str | None, viewer: str) -> Channel:
        """A channel ``viewer`` may see by id: private ones only to members, as in Slack."""
        if not ref:
            raise SlackError("channel_not_found")
        with self.lock:
            channel = self.channels.get(ref)
            if channel is None or (
                (channel.is_private or channel.is_im) and viewer not in channel.members
            ):
                raise SlackError("channel_not_found")
            return channel

    def im_with(self, user_id: str) -> Channel:
        """The bot's direct-message channel with a user, opened on first use (ids ``D…``)."""
        with self.lock:
            for channel in self.channels.values():
                if channel.is_im and channel.im_user == user_id:
                    return channel
            channel = Channel(
                id=self.ids.new("D"),
                name=user_id,
                creator=self.bot.id,
                created=int(self.clock()),
                is_im=True,
                members=[self.bot.id, user_id],
                im_user=user_id,
            )
            self.channels[channel.id] = channel
            return channel

    # -- changes ----------------------------------------------------------------------------

    def new_ts(self) -> str:
        return self._ts.next(self.clock())

    def post(
        self,
        channel: Channel,
        user: User,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        via: str = "chat.postMessage",
    ) -> Message:
        """Append a message to a channel and return it."""
        with self.lock:
            msg = Message(
                ts=self.new_ts(),
                user=user.id,
                text=text,
                team_id=self.team_id,
                blocks=list(blocks or []),
                attachments=list(attachments or []),
                thread_ts=thread_ts,
                bot_id=user.bot_id,
                via=via,
            )
            channel.messages.append(msg)
            return msg

    def post_ephemeral(
        self, channel: str, user: str, text: str, blocks: list[dict[str, Any]], *, via: str
    ) -> Ephemeral:
        """Record a message only ``user`` sees."""
        with self.lock:
            eph = Ephemeral(
                seq=len(self.ephemerals) + 1,
                channel=channel,
                user=user,
                text=text,
                blocks=list(blocks),
                ts=self.new_ts(),
                via=via,
            )
            self.ephemerals.append(eph)
            return eph

    def issue_trigger(self, user: str) -> str:
        """A new ``trigger_id`` for an interaction by ``user``."""
        with self.lock:
            tid = f"{int(self.clock())}.{self.ids.secret(10)}.{self.ids.secret(32)}"
            self.triggers[tid] = Trigger(id=tid, user=user, issued_at=self.clock())
            return tid

    def use_trigger(self, trigger_id: str | None) -> Trigger:
        """Exchange a trigger for a view: once, within ``trigger_ttl`` seconds, as Slack does."""
        with self.lock:
            trigger = self.triggers.get(trigger_id or "")
            if trigger is None:
                raise SlackError("invalid_trigger_id")
            if trigger.used:
                raise SlackError("exchanged_trigger_id")
            if self.clock() - trigger.issued_at > self.trigger_ttl:
                raise SlackError("expired_trigger_id")
            trigger.used = True
            return trigger

    def open_view(
        self,
        user: str,
        data: dict[str, Any],
        previous: OpenView | None = None,
        *,
        external_id: str = "",
    ) -> OpenView:
        """Open a modal for ``user`` (pushed on top of ``previous`` if given)."""
        with self.lock:
            view_id = self.ids.new("V")
            view = OpenView(
                id=view_id,
                user=user,
                data=data,
                hash=self.new_view_hash(),
                root_view_id=previous.root_view_id if previous else view_id,
                previous_view_id=previous.id if previous else None,
                team_id=self.team_id,
                app_id=self.app_id,
                bot_id=self.bot_id,
                external_id=external_id,
            )
            self.views[view.id] = view
            return view

    def new_view_hash(self) -> str:
        """A view ``hash``: views.update with a stale one gets ``hash_conflict``."""
        return f"{int(self.clock())}.{self.ids.secret(8)}"

    def bot_profile(self) -> dict[str, Any]:
        """The ``bot_profile`` Slack attaches to messages a bot posted."""
        icon = "https://avatars.sandbox.invalid/bot"
        return {
            "id": self.bot_id,
            "deleted": False,
            "name": self.bot.real_name,
            "updated": self.bot.updated,
            "app_id": self.app_id,
            "icons": {
                "image_36": f"{icon}_36.png",
                "image_48": f"{icon}_48.png",
                "image_72": f"{icon}_72.png",
            },
            "team_id": self.team_id,
        }
