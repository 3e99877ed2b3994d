"""Working ``response_url`` endpoints, served by the sandbox as hooks.slack.com serves them.

Slash commands and message interactions carry a ``response_url`` the bot may POST to up to
five times within 30 minutes, to answer the user privately (``ephemeral``, the default), in
the channel (``in_channel``), or by replacing or deleting the message the interaction came
from. The posts land in the workspace, so they show in the transcript like anything else.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from incidentbot.sandbox.slack.blockkit import BlockKitError, validate_blocks
from incidentbot.sandbox.slack.models import Ephemeral, Message
from incidentbot.sandbox.slack.workspace import Workspace

MAX_POSTS = 5
LIFETIME_S = 30 * 60


@dataclass
class ResponsePost:
    """One POST the bot made to a response_url, and how the sandbox answered it."""

    body: Any
    status: int
    error: str | None
    at: float


@dataclass
class ResponseUrl:
    """A response_url: who it answers, where, and what it may replace."""

    id: str
    kind: str
    user: str
    channel: str
    created: float
    original_message: str | None = None
    original_ephemeral: int | None = None
    posts: list[ResponsePost] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for p in self.posts if p.status == 200)


class ResponseUrls:
    """All response_urls issued by the driver, and the handler for POSTs to them."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.base_url = "http://127.0.0.1"
        self._urls: dict[str, ResponseUrl] = {}
        self._lock = threading.Lock()

    def create(
        self,
        kind: str,
        user: str,
        channel: str,
        *,
        original_message: str | None = None,
        original_ephemeral: int | None = None,
    ) -> str:
        """Issue a URL (``kind`` is ``commands`` or ``actions``, as in Slack's paths)."""
        with self._lock:
            secret = self.ws.ids.secret()
            number = len(self._urls) + 1
            rid = f"{kind}/{self.ws.team_id}/{number}/{secret}"
            self._urls[rid] = ResponseUrl(
                id=rid,
                kind=kind,
                user=user,
                channel=channel,
                created=self.ws.clock(),
                original_message=original_message,
                original_ephemeral=original_ephemeral,
            )
        return f"{self.base_url}/{rid}"

    def get(self, url_or_id: str) -> ResponseUrl | None:
        rid = url_or_id.removeprefix(self.base_url).lstrip("/")
        with self._lock:
            return self._urls.get(rid)

    def all(self) -> list[ResponseUrl]:
        with self._lock:
            return list(self._urls.values())

    def post(self, rid: str, body: Any) -> tuple[int, dict[str, Any]]:
        """Handle a POST to a response_url: ``(HTTP status, JSON answer)``."""
        url = self.get(rid)
        if url is None:
            return 404, {"ok": False, "error": "no_service"}
        status, error = self._apply(url, body)
        url.posts.append(ResponsePost(body=body, status=status, error=error, at=self.ws.clock()))
        return status, ({"ok": True} if error is None else {"ok": False, "error": error})

    def _apply(self, url: ResponseUrl, body: Any) -> tuple[int, str | None]:
        if self.ws.clock() - url.created > LIFETIME_S:
            return 404, "expired_url"
        if url.accepted >= MAX_POSTS:
            return 404, "used_url"
        if not isinstance(body, dict):
            return 400, "invalid_payload"
        with self.ws.lock:
            if body.get("delete_original"):
                return self._delete_original(url)
            text = body.get("text")
            blocks: list[dict[str, Any]] = []
            if body.get("blocks") is not None:
                try:
                    blocks = validate_blocks(body["blocks"])
                except BlockKitError:
                    return 400, "invalid_blocks"
            if not text and not blocks:
                return 400, "no_text"
            if body.get("replace_original") and self._replace(url, str(text or ""), blocks):
                return 200, None
            self._new(url, str(text or ""), blocks, body)
        return 200, None

    def _original(self, url: ResponseUrl) -> Message | Ephemeral | None:
        if url.original_message is not None:
            channel = self.ws.channels.get(url.channel)
            return channel.message(url.original_message) if channel else None
        if url.original_ephemeral is not None:
            return self.ws.ephemerals[url.original_ephemeral - 1]
        return None

    def _delete_original(self, url: ResponseUrl) -> tuple[int, str | None]:
        original = self._original(url)
        if original is None:
            return 404, "message_not_found"
        if isinstance(original, Ephemeral):
            original.deleted = True
        else:
            self.ws.channels[url.channel].messages.remove(original)
        url.original_message = url.original_ephemeral = None
        return 200, None

    def _replace(self, url: ResponseUrl, text: str, blocks: list[dict[str, Any]]) -> bool:
        original = self._original(url)
        if original is None or (isinstance(original, Ephemeral) and original.deleted):
            return False
        original.text, original.blocks = text, blocks
        if isinstance(original, Ephemeral):
            original.replaced += 1
        return True

    def _new(self, url: ResponseUrl, text: str, blocks: list[dict[str, Any]], body: dict) -> None:
        """A new message; for a slash command it becomes what ``replace_original`` replaces."""
        if body.get("response_type") == "in_channel" and url.channel in self.ws.channels:
            channel = self.ws.channels[url.channel]
            msg = self.ws.post(
                channel,
                self.ws.bot,
                text,
                blocks=blocks,
                thread_ts=body.get("thread_ts"),
                via="response_url",
            )
            if url.kind == "commands":
                url.original_message, url.original_ephemeral = msg.ts, None
        else:
            eph = self.ws.post_ephemeral(url.channel, url.user, text, blocks, via="response_url")
            if url.kind == "commands":
                url.original_message, url.original_ephemeral = None, eph.seq
