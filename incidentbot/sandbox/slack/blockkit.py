"""Block Kit validation, so a message Slack would reject with ``invalid_blocks`` fails here too.

Blocks are parsed with slack_sdk's block models (``Block.parse``) and serialised again, which
runs every length and count rule the models know. Two gaps of that round trip are closed here:
the models silently drop keys they do not know (a typo such as ``"txt"`` would pass) and
accept a bare string or a ``mrkdwn`` object where Slack insists on a ``plain_text`` object.
"""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MESSAGE_BLOCKS_MAX = 50
VIEW_BLOCKS_MAX = 100
_PLAIN_TEXT_ONLY = ("label", "placeholder", "title", "submit", "close", "hint")
_PLAIN_TEXT_TYPES = {"header", "button"}


class BlockKitError(ValueError):
    """Why a list of blocks or a view is not valid Block Kit (the ``detail`` in the answer)."""


def _compare(given: Any, parsed: Any, path: str) -> None:
    """Every key the caller sent must survive the round trip through the models."""
    if isinstance(given, dict):
        if not isinstance(parsed, dict):
            raise BlockKitError(f"{path}: expected an object")
        for key, value in given.items():
            if key not in parsed:
                raise BlockKitError(f"{path}.{key}: unknown or invalid field")
            _compare(value, parsed[key], f"{path}.{key}")
    elif isinstance(given, list):
        if not isinstance(parsed, list) or len(parsed) != len(given):
            raise BlockKitError(f"{path}: invalid list")
        for n, (a, b) in enumerate(zip(given, parsed, strict=True)):
            _compare(a, b, f"{path}[{n}]")
    elif isinstance(given, str) and isinstance(parsed, dict):
        raise BlockKitError(f"{path}: must be a text object, not a string")


def _plain_text_rules(node: Any, path: str) -> None:
    """Slack's rule that labels, titles, headers and button texts are ``plain_text``."""
    if isinstance(node, dict):
        for key, value in node.items():
            must_be_plain = key in _PLAIN_TEXT_ONLY or (
                key == "text" and node.get("type") in _PLAIN_TEXT_TYPES
            )
            if must_be_plain and isinstance(value, dict) and value.get("type") != "plain_text":
                raise BlockKitError(f"{path}.{key}: must be a plain_text object")
            _plain_text_rules(value, f"{path}.{key}")
    elif isinstance(node, list):
        for n, item in enumerate(node):
            _plain_text_rules(item, f"{path}[{n}]")


def load_json_arg(value: Any) -> Any:
    """Form bodies carry blocks and views as JSON strings, JSON bodies as objects."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise BlockKitError(f"not valid JSON: {exc.msg}") from exc
    return value


def validate_blocks(value: Any, *, limit: int = MESSAGE_BLOCKS_MAX) -> list[dict[str, Any]]:
    """Parse and check a ``blocks`` argument; returns the blocks or raises ``BlockKitError``."""
    blocks = load_json_arg(value)
    if not isinstance(blocks, list):
        raise BlockKitError("blocks must be an array")
    if len(blocks) > limit:
        raise BlockKitError(f"no more than {limit} blocks are allowed")
    for n, raw in enumerate(blocks):
        path = f"blocks[{n}]"
        if not isinstance(raw, dict) or "type" not in raw:
            raise BlockKitError(f"{path}: a block is an object with a type")
        try:
            block = Block.parse(raw)
            if block is None:
                raise BlockKitError(f"{path}: unknown block type {raw.get('type')!r}")
            parsed = block.to_dict()
        except (SlackObjectFormationError, TypeError, AttributeError, KeyError) as exc:
            raise BlockKitError(f"{path}: {exc}") from exc
        _compare(raw, parsed, path)
        _plain_text_rules(raw, path)
    return blocks


def validate_view(value: Any) -> dict[str, Any]:
    """Parse and check a ``view`` argument (a modal); raises ``BlockKitError``."""
    view = load_json_arg(value)
    if not isinstance(view, dict):
        raise BlockKitError("view must be an object")
    if view.get("type") not in ("modal", "home"):
        raise BlockKitError("view.type must be modal or home")
    validate_blocks(view.get("blocks", []), limit=VIEW_BLOCKS_MAX)
    try:
        View(**view).to_dict()
    except (SlackObjectFormationError, TypeError, AttributeError, KeyError) as exc:
        raise BlockKitError(f"view: {exc}") from exc
    _plain_text_rules({k: v for k, v in view.items() if k != "blocks"}, "view")
    if view.get("type") == "modal" and "title" not in view:
        raise BlockKitError("view.title is required for a modal")
    return view
