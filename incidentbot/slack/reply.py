"""The one answer every Slack door gives: what the user sees at once, and how."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    text: str
    blocks: list[dict[str, Any]] | None = None
    in_channel: bool = False
    open_modal: bool = False
    modal_args: dict[str, Any] = field(default_factory=dict)
    # Slow work done after Slack has the answer (a GitHub export); its reply goes back
    # through the command's response URL.
    follow_up: Callable[[], Reply] | None = None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "response_type": "in_channel" if self.in_channel else "ephemeral",
        }
        if self.blocks:
            out["blocks"] = self.blocks
        return out
