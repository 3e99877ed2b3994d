"""Block Kit messages, built with slack_sdk's block models so an invalid block fails here.

The two that answer a command (``summary``, ``timeline``) are built as plain dicts of the same
shape instead, their texts clipped to Slack's limits: the models' validation and rendering
were half of a ``timeline`` answer's rendering while Slack waited (the tests parse and
validate what these two build with the models).

Every builder returns ``(text, blocks)``: ``text`` is the notification fallback Slack shows in
alerts and screen readers, ``blocks`` the JSON-ready list. Slack parses both for mentions and
links, so every piece of typed or alert-sent text in them goes through ``mrkdwn`` (plain-text
objects, such as the header block, are not parsed and stay as typed). The header and digest
messages carry a ``block_id`` naming the incident, which lets the bot find (and not repost) its
own message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from incidentbot.chat_text import event_mrkdwn, mention, mrkdwn
from incidentbot.durations import format_duration
from incidentbot.incidents.models import MILESTONES, Incident, RoleAssignment, TimelineEvent

SEV_EMOJI = {
    "SEV1": ":red_circle:",
    "SEV2": ":large_orange_circle:",
    "SEV3": ":large_yellow_circle:",
    "SEV4": ":white_circle:",
}
MAX_SECTION = 2900  # Slack allows 3000 characters in a section's text


def _scoped(installation: str) -> str:
    """Block ids carry the installation's id: two installations in one workspace both have an
    INC-1, and neither may find (and edit) the other's messages."""
    return f"{installation}-" if installation else ""


def header_block_id(incident: Incident, installation: str = "") -> str:
    return f"incident-header-{_scoped(installation)}{incident.number}"


def digest_block_id(incident: Incident, installation: str = "") -> str:
    return f"incident-digest-{_scoped(installation)}{incident.number}"


def _clip(text: str, limit: int = MAX_SECTION) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _render(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    out = []
    for block in blocks:
        block.validate_json()
        out.append(block.to_dict())
    return out


def _status_line(incident: Incident, *, severity: str = "", status: str = "") -> str:
    severity, status = severity or incident.severity, status or incident.status
    emoji = SEV_EMOJI.get(severity, ":large_blue_circle:")
    return f"{emoji} *{severity}* · *{status.capitalize()}*"


def header(
    incident: Incident,
    roles: Sequence[RoleAssignment],
    *,
    extra_lines: Sequence[str] = (),
    installation: str = "",
) -> tuple[str, list[dict[str, Any]]]:
    """The incident's header message: pinned in its channel, updated in place."""
    role_text = "\n".join(f"*{a.role.replace('_', ' ')}*: {mention(a.user)}" for a in roles)
    fields = mrkdwn(", ".join(f"{k}: {v}" for k, v in sorted(incident.fields.items())))
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=_clip(f"{incident.ref}: {incident.title}", 150))),
        SectionBlock(
            block_id=header_block_id(incident, installation),
            text=MarkdownTextObject(text=_status_line(incident)),
            fields=[
                MarkdownTextObject(text=_clip(role_text or "*commander*: nobody", 1900)),
                MarkdownTextObject(
                    text=f"*Declared*: <!date^{int(incident.declared_at.timestamp())}"
                    f"^{{date_short_pretty}} {{time}}|{incident.declared_at:%Y-%m-%d %H:%M} UTC>"
                    + (f"\n*Fields*: {_clip(fields, 1500)}" if fields else "")
                ),
            ],
        ),
    ]
    if incident.description:
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text=_clip(mrkdwn(incident.description))))
        )
    if incident.resolution_summary and incident.status in ("resolved", "closed"):
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=_clip(f"*Resolution*: {mrkdwn(incident.resolution_summary)}")
                )
            )
        )
    for line in extra_lines:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_clip(line, 1900))]))
    text = f"{incident.ref} ({incident.severity}, {incident.status}): {mrkdwn(incident.title)}"
    return text, _render(blocks)


def digest(
    incident: Incident, channel_id: str | None, *, installation: str = ""
) -> tuple[str, list[dict[str, Any]]]:
    """The one message per incident in the digest channel, updated in place. A private
    incident's is one redacted line: its severity and state, nothing of what it is about."""
    if incident.private:
        return _private_digest(incident, installation)
    where = f"<#{channel_id}>" if channel_id else "_channel being created_"
    text = f"{incident.ref} ({incident.severity}): {mrkdwn(incident.title)}"
    blocks = [
        SectionBlock(
            block_id=digest_block_id(incident, installation),
            text=MarkdownTextObject(
                text=_clip(
                    f"{_status_line(incident)} · *{incident.ref}*: {mrkdwn(incident.title)}\n"
                    f"Commander: {mention(incident.commander)} · Channel: {where}"
                )
            ),
        )
    ]
    return text, _render(blocks)


def private_digest_text(incident: Incident) -> str:
    state = "" if incident.status == "triage" else f" · now {incident.status}"
    return f"A private incident was declared ({incident.severity}){state}"


def _private_digest(incident: Incident, installation: str) -> tuple[str, list[dict[str, Any]]]:
    line = private_digest_text(incident)
    blocks = [
        SectionBlock(
            block_id=digest_block_id(incident, installation),
            text=MarkdownTextObject(text=f":lock: {line}"),
        )
    ]
    return line, _render(blocks)


def update_block_id(event: TimelineEvent, installation: str = "") -> str:
    return f"incident-update-{_scoped(installation)}{event.id}"


def status_update(
    incident: Incident, event: TimelineEvent, *, installation: str = ""
) -> tuple[str, list[dict[str, Any]]]:
    author, update = event.actor, mrkdwn(event.summary)
    # The state it was written under (updates written before it was stored show today's).
    written = _status_line(
        incident,
        severity=str(event.data.get("severity") or ""),
        status=str(event.data.get("status") or ""),
    )
    text = f"{incident.ref} update: {update}"
    blocks = [
        SectionBlock(
            block_id=update_block_id(event, installation),
            text=MarkdownTextObject(
                text=_clip(f":loudspeaker: *{incident.ref} update* ({written})\n{update}")
            ),
        ),
        ContextBlock(elements=[MarkdownTextObject(text=f"Posted by {mention(author)}")]),
    ]
    return text, _render(blocks)


def summary(
    incident: Incident, roles: Sequence[RoleAssignment], now: datetime
) -> tuple[str, list[dict[str, Any]]]:
    lines = [_status_line(incident)]
    lines += [f"*{a.role.replace('_', ' ')}*: {mention(a.user)}" for a in roles]
    durations = []
    for name in MILESTONES:
        when = incident.milestone(name)
        if when is not None:
            durations.append(
                f"{name.replace('_', ' ')}: {format_duration(when - incident.declared_at)}"
                " after declare"
            )
    lines.append(f"*Open for*: {format_duration(now - incident.declared_at)}")
    if incident.impact_started_at:
        end = incident.resolved_at or now
        lines.append(f"*Impact so far*: {format_duration(end - incident.impact_started_at)}")
    out = [
        _header(_clip(f"{incident.ref}: {incident.title}", 150)),
        _section(_clip("\n".join(lines))),
    ]
    if durations:
        out.append(_context(_clip("; ".join(durations), 1900)))
    return f"{incident.ref} summary", out


def timeline(
    incident: Incident, events: Sequence[TimelineEvent], *, limit: int = 20, more: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """The latest ``limit`` of ``events``; ``more`` says older events exist beyond them."""
    recent = list(events)[-limit:]
    more = more or len(events) > len(recent)
    shown = (
        f"the latest {len(recent)}; older ones: `incidentbot incident timeline {incident.ref}`"
        if more
        else f"{len(recent)} events"
    )
    lines = [
        f"`{e.occurred_at:%H:%M:%S}` {mention(e.actor)} _{e.kind}_: "
        + event_mrkdwn(e.summary, e.data)
        for e in recent
    ]
    out = [_section(f"*{incident.ref} timeline* ({shown}, UTC)"), {"type": "divider"}]
    chunk: list[str] = []
    for line in lines:
        if chunk and sum(len(x) + 1 for x in chunk) + len(line) > MAX_SECTION:
            out.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(_clip(line, MAX_SECTION))
    if chunk:
        out.append(_section("\n".join(chunk)))
    return f"{incident.ref} timeline", out[:50]


# Plain dicts, as slack_sdk's models render them (the texts clipped by the caller).
def _header(text: str) -> dict[str, Any]:
    return {"text": {"text": text, "type": "plain_text"}, "type": "header"}


def _section(text: str) -> dict[str, Any]:
    return {"text": {"text": text, "type": "mrkdwn"}, "type": "section"}


def _context(text: str) -> dict[str, Any]:
    return {"elements": [{"text": text, "type": "mrkdwn"}], "type": "context"}


def plain(text: str) -> tuple[str, list[dict[str, Any]]]:
    return text, _render([SectionBlock(text=MarkdownTextObject(text=_clip(text)))])
