"""The alert group's message in an incident channel (Block Kit): what fires, what resolved,
and links to the source. Alert text is redacted before it gets here and escaped here."""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from incidentbot.alerts.messages import GroupView
from incidentbot.chat_text import mrkdwn
from incidentbot.incidents.models import Incident
from incidentbot.slack.blocks import _clip, _render, _scoped

MAX_LINE = 300
RUN_ACTION = "alerts_run"  # action ids alerts_run_0, alerts_run_1, ...


def block_id(incident: Incident, group_id: int, installation: str = "") -> str:
    return _block_id(incident.number, group_id, installation)


def _block_id(number: int, group_id: int, installation: str) -> str:
    return f"incident-alerts-{_scoped(installation)}{number}-{group_id}"


def _link(url: str | None, label: str) -> str:
    """A link the bot builds to where an alert came from: http(s) only, with a label of its own;
    nothing in the URL can close the link or start another (``|`` and spaces are encoded,
    ``<`` ``>`` ``&`` escaped)."""
    if not url or not url.startswith(("http://", "https://")):
        return ""
    safe = mrkdwn(url.replace("|", "%7C").replace(" ", "%20"))
    return f" <{safe}|{label}>"


def alert_group(view: GroupView, installation: str = "") -> tuple[str, list[dict[str, Any]]]:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(view.group_labels.items())) or "-"
    icon = ":rotating_light:" if view.firing else ":white_check_mark:"
    head = (
        f"{icon} *Alerts for {view.ref}*: {view.firing} firing, {view.resolved} resolved"
        f" · group {view.group_id} `{mrkdwn(labels)}`"
    )
    if view.snoozed_until is not None:
        head += f"\n:zzz: Snoozed until {view.snoozed_until:%Y-%m-%d %H:%M} UTC: not updated"
    lines = []
    for line in view.lines:
        text = mrkdwn(_clip(line.text, MAX_LINE))
        if line.status == "firing":
            lines.append(f":red_circle: {text}{_link(line.url, 'graph')}")
        else:
            lines.append(f":white_check_mark: ~{text}~ resolved{_link(line.url, 'graph')}")
    more = view.firing + view.resolved - len(view.lines)
    if more > 0:
        lines.append(f"… and {more} more (`/incident alerts`)")
    source = _link(view.source_url, "Alertmanager").strip()
    bid = _block_id(view.number, view.group_id, installation)
    blocks: list[Block] = [
        SectionBlock(block_id=bid, text=MarkdownTextObject(text=_clip(head))),
        SectionBlock(text=MarkdownTextObject(text=_clip("\n".join(lines) or "no alerts"))),
    ]
    buttons = _run_buttons(view)
    if buttons:
        blocks.append(ActionsBlock(elements=buttons))
    if source:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"Source: {source}")]))
    text = f"{view.ref}: {view.firing} alert(s) firing, {view.resolved} resolved ({labels})"
    return text, _render(blocks)


def _run_buttons(view: GroupView) -> list[ButtonElement]:
    """A Run button per suggested runbook; it opens the prefilled run form (slack/app.py)."""
    buttons = []
    for i, suggestion in enumerate(view.suggestions):
        args = " ".join(f"{k}={v}" for k, v in sorted(suggestion.params.items()))
        value = json.dumps({"runbook": suggestion.runbook, "params": suggestion.params})
        if len(value) > 2000:  # Slack's limit on a button value: the runbook is on the timeline
            continue
        label = f"Run {suggestion.runbook}" + (f" {args}" if args else "")
        buttons.append(
            ButtonElement(
                action_id=f"{RUN_ACTION}_{i}",
                text=_clip(label, 75),
                value=value,
            )
        )
    return buttons
