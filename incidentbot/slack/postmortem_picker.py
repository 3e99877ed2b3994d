"""``/incident postmortem edit`` without a section: a form to choose one.

It lists every section, the built-in ones and a team's (``postmortems.extra_sections``), each
marked when written; choosing one replaces the form with that section's edit form (Slack's
``response_action: update``), so the user goes on without typing a section's key.
"""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.models.blocks import InputBlock, Option, PlainTextObject, StaticSelectElement
from slack_sdk.models.views import View

from incidentbot.usecases import postmortems as uc

CALLBACK = "postmortem_pick"
BLOCK = "section"


def section_picker(sections: uc.SectionsWritten, channel_id: str) -> dict[str, Any]:
    options = [
        Option(value=key, text=(f"{title} (written)" if written else title)[:75])
        for key, title, written in sections.sections
    ]
    view = View(
        type="modal",
        callback_id=CALLBACK,
        title=PlainTextObject(text=f"{sections.ref} postmortem"[:24]),
        submit=PlainTextObject(text="Edit"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps({"ref": sections.ref, "channel": channel_id}),
        blocks=[
            InputBlock(
                block_id=BLOCK,
                label="Section to write",
                element=StaticSelectElement(action_id="value", options=options),
            )
        ],
    )
    view.validate_json()
    return view.to_dict()


def chosen(view: dict[str, Any]) -> tuple[str, str, str]:
    """(incident ref, section key, channel) from a submitted picker."""
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    values = (view.get("state") or {}).get("values") or {}
    option = ((values.get(BLOCK) or {}).get("value") or {}).get("selected_option") or {}
    return (
        str(meta.get("ref") or ""),
        str(option.get("value") or ""),
        str(meta.get("channel") or ""),
    )
