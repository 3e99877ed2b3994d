"""Reminder messages: a line of text and, for the ones people can quiet, snooze and dismiss
buttons whose value names the reminder and the basis it was sent for."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from incidentbot.durations import format_span

SNOOZE = "reminder_snooze"
DISMISS = "reminder_dismiss"
ACTIONS_BLOCK = "reminder-actions"


def _value(kind: str, subject: str, basis: datetime | None, **extra: Any) -> str:
    data: dict[str, Any] = {"kind": kind, "subject": subject}
    if basis is not None:
        data["basis"] = basis.isoformat()
    data.update(extra)
    return json.dumps(data, separators=(",", ":"))


def reminder_blocks(
    text: str,
    *,
    kind: str,
    subject: str,
    basis: datetime | None,
    snooze: list[timedelta] = (),  # type: ignore[assignment]
    dismiss: str | None = None,
) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = [
        {
            "type": "button",
            "action_id": f"{SNOOZE}_{int(d.total_seconds() // 60)}",
            "text": {"type": "plain_text", "text": f"Snooze {format_span(d)}"},
            "value": _value(kind, subject, basis, minutes=int(d.total_seconds() // 60)),
        }
        for d in snooze
    ]
    if dismiss:
        elements.append(
            {
                "type": "button",
                "action_id": DISMISS,
                "text": {"type": "plain_text", "text": dismiss},
                "value": _value(kind, subject, basis),
            }
        )
    out: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if elements:
        out.append({"type": "actions", "block_id": ACTIONS_BLOCK, "elements": elements})
    return out


def outcome_blocks(blocks: list[dict[str, Any]], line: str) -> list[dict[str, Any]]:
    """The message with its buttons replaced by what became of the reminder."""
    kept = [b for b in blocks if b.get("block_id") != ACTIONS_BLOCK]
    kept.append(
        {
            "type": "context",
            "block_id": ACTIONS_BLOCK,
            "elements": [{"type": "mrkdwn", "text": line}],
        }
    )
    return kept


def read_value(value: str) -> tuple[str, str, datetime | None, int | None]:
    """(kind, subject, basis, minutes) from a button's value; ValueError when it is not one."""
    data = json.loads(value)
    basis = datetime.fromisoformat(data["basis"]) if data.get("basis") else None
    minutes = int(data["minutes"]) if data.get("minutes") is not None else None
    if minutes is not None and not 1 <= minutes <= 1440:
        raise ValueError("snooze out of range")
    return str(data["kind"]), str(data["subject"]), basis, minutes
