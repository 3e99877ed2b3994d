"""The Slack implementation of the ``Chat`` port, on slack_sdk's WebClient over kept-alive
connections (:mod:`incidentbot.slack.connections`).

Every Slack failure becomes an :class:`~incidentbot.ports.ExternalError` that says whether a
retry can help: 429 (with Retry-After), 5xx and network errors can; ``invalid_name_specials``
or ``channel_not_found`` cannot. Retrying is the ledger's job, so the client itself does not
retry; it only times out. Calls are counted per method for ``/metrics``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError

from incidentbot.ports import ChannelInfo, ExternalError, UserInfo
from incidentbot.slack.connections import SlackConnections
from incidentbot.slack.web_client import PooledWebClient

log = logging.getLogger(__name__)

# Slack error codes where trying the same call again later can succeed.
RETRYABLE_CODES = {
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}

CallObserver = Callable[[str, str, float], None]  # (method, outcome, seconds)

# Looking for a message the bot may have posted (an answer lost, a crash): a page of history,
# how many pages at most when no start is known, and the allowance for Slack's clock.
FIND_PAGE = 200
FIND_PAGES = 25
FIND_SKEW = timedelta(minutes=2)


class SlackChat:
    """``Chat`` over the Slack Web API (or the local Slack-compatible server)."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        observer: CallObserver | None = None,
        connections: SlackConnections | None = None,
    ):
        """``connections``: the pool to send over (shared with Bolt's client in ``serve``);
        a pool of its own when not given."""
        kwargs: dict[str, Any] = {"token": token, "timeout": int(max(1, timeout))}
        if base_url:
            kwargs["base_url"] = base_url
        # No retry handlers: the ledger retries, durably.
        self.client = PooledWebClient(**kwargs, connections=connections)
        self.connections = self.client.connections
        self._observer = observer
        self._bot_user_id: str | None = None

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, method: str, **args: Any) -> dict[str, Any]:
        started = time.perf_counter()
        outcome = "ok"
        try:
            # The SDK's own method encodes arguments the way Slack documents for each method.
            response = getattr(self.client, method.replace(".", "_"))(**args)
            return dict(response.data) if isinstance(response.data, dict) else {}
        except SlackApiError as exc:
            status = exc.response.status_code
            code = str(exc.response.get("error") or f"http_{status}")
            outcome = code
            retry_after = None
            if status == 429 or code == "ratelimited":
                retry_after = float(exc.response.headers.get("Retry-After", 1) or 1)
                code = "ratelimited"
            retryable = status == 429 or status >= 500 or code in RETRYABLE_CODES
            raise ExternalError(
                code, f"{method} failed", retryable=retryable, retry_after=retry_after
            ) from None
        except (SlackClientError, OSError, TimeoutError) as exc:
            outcome = "network_error"
            raise ExternalError(
                "network_error", f"{method}: {type(exc).__name__}", retryable=True
            ) from None
        finally:
            if self._observer:
                self._observer(method, outcome, time.perf_counter() - started)

    def bot_user_id(self) -> str:
        if self._bot_user_id is None:
            self._bot_user_id = str(self._call("auth.test")["user_id"])
        return self._bot_user_id

    # -- Chat ----------------------------------------------------------------------------------

    def find_channel(self, name: str) -> ChannelInfo | None:
        cursor = None
        for _ in range(50):  # bounded: 50 pages of 200 channels
            args: dict[str, Any] = {
                "limit": 200,
                "exclude_archived": False,
                "types": "public_channel,private_channel",
            }
            if cursor:
                args["cursor"] = cursor
            data = self._call("conversations.list", **args)
            for ch in data.get("channels", []):
                if ch.get("name") == name:
                    return _channel(ch)
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

    def create_channel(self, name: str, *, private: bool = False) -> ChannelInfo:
        data = self._call("conversations.create", name=name, is_private=private)
        channel = _channel(data["channel"])
        if self._bot_user_id is None and channel.creator:
            self._bot_user_id = channel.creator  # the bot made it: no auth.test needed
        return channel

    def rename_channel(self, channel_id: str, name: str) -> ChannelInfo:
        return _channel(
            self._call("conversations.rename", channel=channel_id, name=name)["channel"]
        )

    def set_topic(self, channel_id: str, topic: str) -> None:
        self._call("conversations.setTopic", channel=channel_id, topic=topic[:250])

    def set_purpose(self, channel_id: str, purpose: str) -> None:
        self._call("conversations.setPurpose", channel=channel_id, purpose=purpose[:250])

    def invite(
        self, channel_id: str, user_ids: list[str], *, read_members: bool = True
    ) -> list[str]:
        bot = self.bot_user_id()
        wanted = [u for u in dict.fromkeys(user_ids) if u and u != bot]
        if not wanted:
            return []
        if not read_members:
            try:
                self._call("conversations.invite", channel=channel_id, users=",".join(wanted))
                return wanted
            except ExternalError as exc:
                if exc.code != "already_in_channel":
                    raise
            # Slack invites no one when one is a member already: read them, invite the rest.
        members = set(self._members(channel_id))
        new = [u for u in wanted if u not in members]
        if new:
            try:
                self._call("conversations.invite", channel=channel_id, users=",".join(new))
            except ExternalError as exc:
                if exc.code != "already_in_channel":
                    raise
        return new

    def _members(self, channel_id: str) -> list[str]:
        return self.channel_members(channel_id)

    def channel_members(self, channel_id: str) -> list[str]:
        """Every member of the channel (following the cursor past the first page)."""
        members: list[str] = []
        cursor = ""
        while True:
            args: dict[str, Any] = {"channel": channel_id, "limit": 1000}
            if cursor:
                args["cursor"] = cursor
            data = self._call("conversations.members", **args)
            members.extend(data.get("members", []))
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or ""
            if not cursor:
                return members

    def usergroup_members(self, group_id: str) -> list[str]:
        return list(self._call("usergroups.users.list", usergroup=group_id).get("users", []))

    def find_message(
        self, channel_id: str, block_id: str, *, since: datetime | None = None
    ) -> str | None:
        """Page back through the channel's history (to ``since``, or at most
        :data:`FIND_PAGES` pages) for the bot's message carrying ``block_id``: a busy channel
        may have had hundreds of messages since an answer was lost."""
        args: dict[str, Any] = {"channel": channel_id, "limit": FIND_PAGE}
        if since is not None:
            args["oldest"] = f"{(since - FIND_SKEW).timestamp():.6f}"
        for _ in range(FIND_PAGES):
            data = self._call("conversations.history", **args)
            messages = data.get("messages", [])
            for message in messages:
                for block in message.get("blocks") or []:
                    if block.get("block_id") == block_id:
                        return str(message["ts"])
            if not data.get("has_more") or not messages:
                return None
            args["latest"] = str(messages[-1]["ts"])  # older than the oldest seen so far
        return None

    def post(self, channel_id: str, text: str, blocks: list[dict[str, Any]]) -> str:
        args: dict[str, Any] = {"channel": channel_id, "text": text}
        if blocks:
            args["blocks"] = blocks
        data = self._call("chat.postMessage", **args)
        return str(data["ts"])

    def update(self, channel_id: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        self._call("chat.update", channel=channel_id, ts=ts, text=text, blocks=blocks)

    def pin(self, channel_id: str, ts: str) -> None:
        try:
            self._call("pins.add", channel=channel_id, timestamp=ts)
        except ExternalError as exc:
            if exc.code != "already_pinned":
                raise

    def archive_channel(self, channel_id: str) -> None:
        try:
            self._call("conversations.archive", channel=channel_id)
        except ExternalError as exc:
            if exc.code != "already_archived":
                raise

    def post_ephemeral(
        self, channel_id: str, user_id: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        args: dict[str, Any] = {"channel": channel_id, "user": user_id, "text": text}
        if blocks:
            args["blocks"] = blocks
        self._call("chat.postEphemeral", **args)

    def permalink(self, channel_id: str, ts: str) -> str | None:
        try:
            data = self._call("chat.getPermalink", channel=channel_id, message_ts=ts)
        except ExternalError:
            return None
        return data.get("permalink")

    def open_dm(self, user_id: str) -> str:
        data = self._call("conversations.open", users=user_id)
        return str(data["channel"]["id"])

    def user_info(self, user_id: str) -> UserInfo | None:
        try:
            data = self._call("users.info", user=user_id)
        except ExternalError as exc:
            if exc.code == "user_not_found":
                return None
            raise
        return _user(data.get("user") or {}, user_id)

    def user_by_email(self, email: str) -> UserInfo | None:
        try:
            data = self._call("users.lookupByEmail", email=email)
        except ExternalError as exc:
            if exc.code == "users_not_found":
                return None
            raise
        return _user(data.get("user") or {}, email)


def _user(user: dict[str, Any], fallback: str) -> UserInfo:
    profile = user.get("profile") or {}
    return UserInfo(
        id=str(user.get("id", fallback)),
        name=str(profile.get("display_name") or user.get("name") or fallback),
        real_name=profile.get("real_name") or user.get("real_name"),
        email=profile.get("email"),
        deleted=bool(user.get("deleted", False)),
        is_bot=bool(user.get("is_bot", False)),
    )


def _channel(ch: dict[str, Any]) -> ChannelInfo:
    purpose = ch.get("purpose") or {}
    return ChannelInfo(
        id=str(ch["id"]),
        name=str(ch.get("name", "")),
        purpose=str(purpose.get("value", "")) if isinstance(purpose, dict) else str(purpose),
        archived=bool(ch.get("is_archived", False)),
        creator=ch.get("creator"),
    )
