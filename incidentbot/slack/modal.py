"""The declare form: ``/incident declare`` with no title opens it.

Built with slack_sdk's view and block models; a submission is read back into the declare
arguments, and problems come back as Slack's per-field ``errors`` so the form stays open.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    CheckboxesElement,
    DateTimePickerElement,
    InputBlock,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    StaticSelectElement,
    UserSelectElement,
)
from slack_sdk.models.views import View

from incidentbot.config import Settings

CALLBACK_ID = "incident_declare"


PRIVATE = Option(
    value="private",
    text="Private: a private channel, left out of the digest and public reports",
)


def declare_view(
    settings: Settings, *, declarer: str, severity: str | None, private: bool = False
) -> dict[str, Any]:
    sev_options = [
        Option(value=s.name, text=f"{s.name} · {s.label}"[:75]) for s in settings.severities
    ]
    initial = next(
        (o for o in sev_options if o.value == (severity or settings.default_severity)),
        sev_options[0],
    )
    blocks: list[Any] = [
        InputBlock(
            block_id="title",
            label="Title",
            element=PlainTextInputElement(
                action_id="value", max_length=200, placeholder="RPC p99 latency above 2s"
            ),
        ),
        InputBlock(
            block_id="severity",
            label="Severity",
            element=StaticSelectElement(
                action_id="value", options=sev_options, initial_option=initial
            ),
        ),
        InputBlock(
            block_id="description",
            label="Description",
            optional=True,
            element=PlainTextInputElement(action_id="value", multiline=True, max_length=3000),
        ),
        InputBlock(
            block_id="impact_started",
            label="Impact started",
            optional=True,
            element=DateTimePickerElement(action_id="value"),
        ),
        InputBlock(
            block_id="commander",
            label="Commander",
            element=UserSelectElement(action_id="value", initial_user=declarer),
        ),
        InputBlock(
            block_id="private",
            label="Visibility",
            optional=True,
            element=CheckboxesElement(
                action_id="value",
                options=[PRIVATE],
                **({"initial_options": [PRIVATE]} if private else {}),
            ),
        ),
    ]
    for spec in settings.fields:
        if spec.allowed:
            element: Any = StaticSelectElement(
                action_id="value", options=[Option(value=v, text=v[:75]) for v in spec.allowed]
            )
        else:
            element = PlainTextInputElement(action_id="value", max_length=100)
        blocks.append(
            InputBlock(
                block_id=f"field_{spec.name}",
                label=spec.label,
                optional=not spec.required,
                element=element,
            )
        )
    view = View(
        type="modal",
        callback_id=CALLBACK_ID,
        title=PlainTextObject(text="Declare an incident"),
        submit=PlainTextObject(text="Declare"),
        close=PlainTextObject(text="Cancel"),
        blocks=blocks,
    )
    view.validate_json()
    return view.to_dict()


def read_submission(settings: Settings, values: dict[str, Any]) -> dict[str, Any]:
    """The declare arguments from ``view.state.values``."""

    def get(block: str) -> Any:
        element = (values.get(block) or {}).get("value") or {}
        for key in ("value", "selected_user", "selected_date_time"):
            if element.get(key) not in (None, ""):
                return element[key]
        option = element.get("selected_option")
        return option.get("value") if option else None

    impact = get("impact_started")
    chosen = ((values.get("private") or {}).get("value") or {}).get("selected_options") or []
    fields = {s.name: get(f"field_{s.name}") for s in settings.fields}
    return {
        "title": (get("title") or "").strip(),
        "severity": get("severity"),
        "description": get("description"),
        "commander": get("commander"),
        "impact_started_at": datetime.fromtimestamp(int(impact), UTC) if impact else None,
        "fields": {k: v for k, v in fields.items() if v},
        "private": any(o.get("value") == "private" for o in chosen),
    }


def field_errors(settings: Settings, message: str) -> dict[str, str]:
    """Put a domain error under the form field it is about (Slack shows it there)."""
    lowered = message.lower()
    for spec in settings.fields:
        if f"'{spec.name}'" in lowered or f" {spec.name}:" in lowered:
            return {f"field_{spec.name}": message}
    for key, block in (
        ("severity", "severity"),
        ("impact", "impact_started"),
        ("commander", "commander"),
    ):
        if key in lowered:
            return {block: message}
    return {"title": message}
