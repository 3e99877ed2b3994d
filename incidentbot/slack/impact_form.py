"""The impact numbers in the Impact section's form: a number input for each count (requests
failed, users and validators affected, blocks behind, missed slots) and a text input for how
long service was degraded (``40m``, ``1h30m``).

The form starts with what was typed before (kept in its metadata): only the numbers changed
are saved, so a form does not undo what someone set from the command line meanwhile. An
emptied input clears its number. A number that cannot be read is shown under its input and
nothing is saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_sdk.models.blocks import InputBlock, NumberInputElement, PlainTextInputElement

from incidentbot.postmortems import impact_numbers as numbers

PREFIX = "impact_"


def _duration_text(seconds: int) -> str:
    """Seconds as typed back into the form (``1h30m``, ``45s``): parse_value reads it."""
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            out += f"{amount}{unit}"
    return out or "0s"


def initial(key: str, value: int | None) -> str | None:
    if value is None:
        return None
    return _duration_text(value) if numbers.BY_KEY[key].kind == numbers.DURATION else str(value)


def blocks(typed: Mapping[str, int]) -> list[InputBlock]:
    out = []
    for spec in numbers.NUMBERS:
        first = initial(spec.key, typed.get(spec.key))
        element: Any
        if spec.kind == numbers.DURATION:
            element = PlainTextInputElement(
                action_id="value", max_length=40, placeholder=spec.hint, initial_value=first
            )
        else:
            element = NumberInputElement(
                action_id="value",
                is_decimal_allowed=False,
                min_value="0",
                max_value=str(numbers.MAX_COUNT),
                initial_value=first,
            )
        out.append(
            InputBlock(
                block_id=PREFIX + spec.key,
                label=spec.label,
                hint=f"{spec.hint}; empty: not known",
                optional=True,
                element=element,
            )
        )
    return out


def changed(values: Mapping[str, Any], before: object) -> dict[str, str | None]:
    """The numbers whose input differs from what the form started with (what was typed)."""
    start = before if isinstance(before, dict) else {}
    out: dict[str, str | None] = {}
    for spec in numbers.NUMBERS:
        block = values.get(PREFIX + spec.key)
        if block is None:
            continue  # not in this form (another section's)
        raw = str(((block or {}).get("value") or {}).get("value") or "").strip()
        was = start.get(spec.key)
        was_text = initial(spec.key, was) if isinstance(was, int) else None
        if raw == (was_text or ""):
            continue
        out[spec.key] = raw or None
    return out


def errors(by_key: Mapping[str, str]) -> dict[str, str]:
    """Slack's per-field errors for numbers that could not be read."""
    return {PREFIX + key: (m[:1].upper() + m[1:])[:150] for key, m in by_key.items()}
