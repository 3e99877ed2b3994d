"""A readable transcript of what each channel shows, as a person in Slack would see it.

The demo prints it, and tests assert on it: what counts is what people read (names rather
than ids, the message as last edited, what is pinned, the topic), not the calls that got it
there. ``snapshot`` gives the same content as data for precise assertions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from incidentbot.sandbox.slack.ids import parse_ts
from incidentbot.sandbox.slack.models import Channel, Ephemeral, Message
from incidentbot.sandbox.slack.workspace import Workspace

_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


@dataclass
class ShownMessage:
    """A message as readers see it now: author name, rendered text, state markers."""

    ts: str
    author: str
    text: str
    edited: bool
    pinned: bool
    reactions: dict[str, list[str]]
    replies: list[ShownMessage] = field(default_factory=list)
    only_visible_to: str | None = None


@dataclass
class ChannelSnapshot:
    """One channel as people see it."""

    id: str
    name: str
    is_private: bool
    is_archived: bool
    topic: str
    purpose: str
    members: list[str]
    bookmarks: list[str]
    messages: list[ShownMessage]

    @property
    def pinned(self) -> list[ShownMessage]:
        return [m for m in self.messages if m.pinned]

    def texts(self) -> list[str]:
        """Every visible message text in order (ephemeral ones included), for assertions."""
        return [m.text for m in self.messages]


def plain(ws: Workspace, text: str) -> str:
    """Turn Slack markup (``<@U…>``, ``<#C…|name>``, ``<!subteam^S…>``, links) into words."""

    def swap(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@"):
            user = ws.users.get(target[1:])
            return "@" + (label or (user.shown_name if user else target[1:]))
        if target.startswith("#"):
            channel = ws.channels.get(target[1:])
            return "#" + (label or (channel.name if channel else target[1:]))
        if target.startswith("!subteam^"):
            group = ws.usergroups.get(target.removeprefix("!subteam^"))
            return "@" + (group.handle if group else (label or target))
        if target.startswith("!"):
            return "@" + (label or target[1:])
        return f"{label} ({target})" if label else target

    return _LINK.sub(swap, text)


def _text_of(obj: Any) -> str:
    if isinstance(obj, dict):
        return str(obj.get("text", ""))
    return str(obj or "")


def _rich_text(node: Any) -> str:
    if isinstance(node, dict):
        if "text" in node and isinstance(node["text"], str):
            return node["text"]
        return "".join(_rich_text(e) for e in node.get("elements", []))
    if isinstance(node, list):
        return "".join(_rich_text(e) for e in node)
    return ""


def render_blocks(blocks: list[dict[str, Any]]) -> list[str]:
    """Block Kit as lines of text: headers, sections and fields, context, buttons."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"## {_text_of(block.get('text'))}")
        elif kind == "section":
            if block.get("text"):
                lines.append(_text_of(block["text"]))
            lines.extend(f"  • {_text_of(f)}" for f in block.get("fields", []))
            accessory = block.get("accessory") or {}
            if accessory.get("type") == "button":
                lines.append(f"  [{_text_of(accessory.get('text'))}]")
        elif kind == "context":
            parts = [_text_of(e) for e in block.get("elements", []) if e.get("type") != "image"]
            lines.append("  " + " · ".join(p for p in parts if p))
        elif kind == "divider":
            lines.append("---")
        elif kind == "actions":
            labels = [_text_of(e.get("text")) or e.get("type", "") for e in block["elements"]]
            lines.append(" ".join(f"[{label}]" for label in labels))
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "input":
            lines.append(f"{_text_of(block.get('label'))}: ____")
        elif kind == "rich_text":
            lines.append(_rich_text(block))
    return lines


def _shown_text(ws: Workspace, text: str, blocks: list[dict[str, Any]]) -> str:
    body = "\n".join(render_blocks(blocks)) if blocks else text
    return plain(ws, body)


def _shown(ws: Workspace, msg: Message) -> ShownMessage:
    author = ws.users[msg.user].shown_name if msg.user in ws.users else msg.user
    reactions = {
        name: [ws.users[u].shown_name if u in ws.users else u for u in users]
        for name, users in msg.reactions.items()
    }
    text = _shown_text(ws, msg.text, msg.blocks)
    for attachment in msg.attachments:
        text += f"\n[attachment: {attachment.get('fallback') or attachment.get('text', '')}]"
    return ShownMessage(msg.ts, author, text, msg.edits > 0, msg.pinned, reactions)


def _shown_ephemeral(ws: Workspace, eph: Ephemeral) -> ShownMessage:
    who = ws.users[eph.user].shown_name if eph.user in ws.users else eph.user
    text = _shown_text(ws, eph.text, eph.blocks)
    return ShownMessage(eph.ts, ws.bot.shown_name, text, False, False, {}, only_visible_to=who)


def snapshot(ws: Workspace, channel: Channel) -> ChannelSnapshot:
    """What ``channel`` shows now, threads nested under their parent message."""
    with ws.lock:
        top: list[ShownMessage] = []
        by_ts: dict[str, ShownMessage] = {}
        for msg in channel.messages:
            shown = _shown(ws, msg)
            parent = by_ts.get(msg.thread_ts or "") if msg.thread_ts != msg.ts else None
            if parent is not None:
                parent.replies.append(shown)
            else:
                top.append(shown)
                by_ts[msg.ts] = shown
        top.extend(
            _shown_ephemeral(ws, e)
            for e in ws.ephemerals
            if e.channel == channel.id and not e.deleted
        )
        top.sort(key=lambda m: parse_ts(m.ts))
        name = (
            f"DM with {ws.users[channel.im_user].shown_name}" if channel.im_user else channel.name
        )
        return ChannelSnapshot(
            id=channel.id,
            name=name,
            is_private=channel.is_private,
            is_archived=channel.is_archived,
            topic=plain(ws, channel.topic.value),
            purpose=plain(ws, channel.purpose.value),
            members=[ws.users[m].shown_name for m in channel.members if m in ws.users],
            bookmarks=[f"{b.title} ({b.link})" for b in ws.bookmarks if b.channel_id == channel.id],
            messages=top,
        )


def _clock(ts: str) -> str:
    return datetime.fromtimestamp(parse_ts(ts), UTC).strftime("%H:%M:%S")


def _render_message(msg: ShownMessage, indent: str, marker: str = "") -> list[str]:
    marks = [m for m, on in (("(edited)", msg.edited), ("[pinned]", msg.pinned)) if on]
    if msg.only_visible_to:
        marks.append(f"(only visible to {msg.only_visible_to})")
    head = f"{indent}{marker}{_clock(msg.ts)}  {msg.author}" + "".join(f"  {m}" for m in marks)
    body = indent + " " * len(marker) + "    "
    lines = [head]
    lines.extend(f"{body}{line}" for line in msg.text.splitlines() or [""])
    if msg.reactions:
        shown = ", ".join(f":{name}: {' '.join(users)}" for name, users in msg.reactions.items())
        lines.append(f"{body}reactions: {shown}")
    for reply in msg.replies:
        lines.extend(_render_message(reply, indent + "  ", "↳ "))
    return lines


def render_channel(snap: ChannelSnapshot) -> str:
    """One channel's transcript as text."""
    prefix = "" if snap.name.startswith("DM with") else ("🔒" if snap.is_private else "#")
    title = f"{prefix}{snap.name} ({snap.id})" + ("  [archived]" if snap.is_archived else "")
    lines = [title, "=" * len(title)]
    if snap.topic:
        lines.append(f"Topic:   {snap.topic}")
    if snap.purpose:
        lines.append(f"Purpose: {snap.purpose}")
    lines.append(f"Members: {', '.join(snap.members)}")
    if snap.bookmarks:
        lines.append(f"Bookmarks: {'; '.join(snap.bookmarks)}")
    if snap.pinned:
        lines.append(f"Pinned:  {len(snap.pinned)} message(s)")
    lines.append("")
    for msg in snap.messages:
        lines.extend(_render_message(msg, "  "))
    if not snap.messages:
        lines.append("  (no messages)")
    return "\n".join(lines)


def render(ws: Workspace, channel: str | None = None, *, include_empty: bool = False) -> str:
    """The transcript of one channel (id or name) or of every channel with something to show."""
    with ws.lock:
        if channel is not None:
            return render_channel(snapshot(ws, ws.channel(channel)))
        parts = []
        for chan in ws.channels.values():
            snap = snapshot(ws, chan)
            if snap.messages or include_empty:
                parts.append(render_channel(snap))
        return "\n\n".join(parts)
