"""The payloads Slack sends to an app: slash commands, interactions, Events API callbacks.

Field names and nesting follow what Slack sends (and what Bolt reads), so a bot that works
against the sandbox reads real traffic the same way. Builders take workspace objects and
return plain dicts; signing and sending live in ``driver``.
"""

from __future__ import annotations

import re
from typing import Any

from incidentbot.sandbox.slack.models import Channel, Ephemeral, Message, OpenView, User
from incidentbot.sandbox.slack.workspace import Workspace

_CONTAINERS = ("actions", "section", "input", "context")


def user_ref(ws: Workspace, user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.name, "name": user.name, "team_id": ws.team_id}


def slash_command(
    ws: Workspace,
    user: User,
    channel: Channel,
    *,
    command: str,
    text: str,
    trigger_id: str,
    response_url: str,
    verification_token: str,
) -> dict[str, str]:
    """The form fields of a slash command invocation."""
    return {
        "token": verification_token,
        "team_id": ws.team_id,
        "team_domain": ws.domain,
        "channel_id": channel.id,
        "channel_name": "directmessage" if channel.is_im else channel.name,
        "user_id": user.id,
        "user_name": user.name,
        "command": command,
        "text": text,
        "api_app_id": ws.app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def find_element(blocks: list[dict[str, Any]], action_id: str) -> tuple[str, dict[str, Any]]:
    """``(block_id, element)`` of the interactive element with ``action_id``."""
    for n, block in enumerate(blocks):
        if block.get("type") not in _CONTAINERS:
            continue
        candidates = list(block.get("elements", []))
        for key in ("accessory", "element"):
            if isinstance(block.get(key), dict):
                candidates.append(block[key])
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return str(block.get("block_id") or f"b{n}"), element
    raise LookupError(f"no interactive element with action_id {action_id!r}")


def _options(element: dict[str, Any]) -> list[dict[str, Any]]:
    options = list(element.get("options", []))
    for group in element.get("option_groups", []):
        options.extend(group.get("options", []))
    return options


def _option(element: dict[str, Any], value: Any) -> dict[str, Any]:
    for option in _options(element):
        if option.get("value") == value:
            return option
    raise LookupError(f"{element.get('action_id')!r} has no option with value {value!r}")


def element_value(element: dict[str, Any], value: Any) -> dict[str, Any]:
    """The state Slack reports for an input element set to ``value`` (by element type)."""
    kind = element.get("type", "")
    out: dict[str, Any] = {"type": kind}
    if kind in ("plain_text_input", "number_input", "email_text_input", "url_text_input"):
        out["value"] = None if value is None else str(value)
    elif kind in ("static_select", "external_select", "radio_buttons", "overflow"):
        out["selected_option"] = None if value is None else _option(element, value)
    elif kind in ("multi_static_select", "multi_external_select", "checkboxes"):
        out["selected_options"] = [_option(element, v) for v in (value or [])]
    elif kind == "users_select":
        out["selected_user"] = value
    elif kind == "multi_users_select":
        out["selected_users"] = list(value or [])
    elif kind == "conversations_select":
        out["selected_conversation"] = value
    elif kind == "channels_select":
        out["selected_channel"] = value
    elif kind == "datepicker":
        out["selected_date"] = value
    elif kind == "timepicker":
        out["selected_time"] = value
    elif kind == "datetimepicker":
        out["selected_date_time"] = value
    else:
        out["value"] = value
    return out


def view_state(view: OpenView, inputs: dict[str, Any]) -> dict[str, Any]:
    """``state.values`` for a submitted modal; ``inputs`` keyed by action_id or block_id.

    An element not named in ``inputs`` is submitted with its initial value, as Slack's client
    submits what the form showed.

    Slack's client refuses to submit a modal with an empty required input, so that is an
    error here too rather than a payload Slack would never send.
    """
    values: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for n, block in enumerate(view.data.get("blocks", [])):
        if block.get("type") == "section" and _stateful(block.get("accessory")):
            _accessory_state(block, n, inputs, values, used)
        if block.get("type") != "input":
            continue
        element = block.get("element", {})
        block_id = str(block.get("block_id") or f"b{n}")
        action_id = str(element.get("action_id") or f"a{n}")
        key = action_id if action_id in inputs else block_id if block_id in inputs else None
        value = inputs.get(key) if key else initial_value(element)
        if key:
            used.add(key)
        if value in (None, "", []) and not block.get("optional", False):
            label = block.get("label", {}).get("text", block_id)
            raise ValueError(f"required input {label!r} ({action_id}) has no value")
        if element.get("type") == "number_input" and value not in (None, ""):
            _check_number(element, value, block.get("label", {}).get("text", block_id))
        values.setdefault(block_id, {})[action_id] = element_value(element, value)
    unknown = set(inputs) - used
    if unknown:
        raise ValueError(f"the view has no input named {sorted(unknown)}")
    return {"values": values}


def _check_number(element: dict[str, Any], value: Any, label: str) -> None:
    """Slack's client refuses to submit a number input holding something else: not a number,
    a decimal where ``is_decimal_allowed`` is false, or outside ``min_value``/``max_value``."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"number input {label!r}: {text!r} is not a number") from None
    if not element.get("is_decimal_allowed") and not re.fullmatch(r"-?\d+", text):
        raise ValueError(f"number input {label!r}: {text!r} is not a whole number")
    low, high = element.get("min_value"), element.get("max_value")
    if low is not None and number < float(low):
        raise ValueError(f"number input {label!r}: {text} is below {low}")
    if high is not None and number > float(high):
        raise ValueError(f"number input {label!r}: {text} is above {high}")


def _stateful(element: Any) -> bool:
    """An element whose value Slack keeps in a view's state (not a button or an image)."""
    return isinstance(element, dict) and element.get("type") not in (None, "button", "image")


def _accessory_state(
    block: dict[str, Any],
    n: int,
    inputs: dict[str, Any],
    values: dict[str, dict[str, Any]],
    used: set[str],
) -> None:
    """A section accessory's state (e.g. a select), as Slack reports it on submission.

    Its value is the one given in ``inputs`` (by action_id or block_id), else its initial one,
    else none picked: an accessory is never required.
    """
    element = block["accessory"]
    block_id = str(block.get("block_id") or f"b{n}")
    action_id = str(element.get("action_id") or f"a{n}")
    key = action_id if action_id in inputs else block_id if block_id in inputs else None
    if key:
        used.add(key)
    value = inputs[key] if key else initial_value(element)
    values.setdefault(block_id, {})[action_id] = element_value(element, value)


def initial_value(element: dict[str, Any]) -> Any:
    """What an element holds before anyone touches it (its ``initial_*``), as a driver value."""
    if isinstance(element.get("initial_option"), dict):
        return element["initial_option"].get("value")
    if isinstance(element.get("initial_options"), list):
        return [o.get("value") for o in element["initial_options"]]
    return next((element[k] for k in _INITIAL_KEYS if element.get(k) is not None), None)


_INITIAL_KEYS = (
    "initial_value",
    "initial_user",
    "initial_users",
    "initial_conversation",
    "initial_channel",
    "initial_date",
    "initial_time",
    "initial_date_time",
)


def block_action(
    ws: Workspace,
    user: User,
    *,
    action: dict[str, Any],
    trigger_id: str,
    verification_token: str,
    channel: Channel | None = None,
    message: Message | None = None,
    ephemeral: Ephemeral | None = None,
    view: OpenView | None = None,
    response_url: str | None = None,
) -> dict[str, Any]:
    """A ``block_actions`` interaction from a message button/select or a modal element."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": user_ref(ws, user),
        "api_app_id": ws.app_id,
        "token": verification_token,
        "trigger_id": trigger_id,
        "team": {"id": ws.team_id, "domain": ws.domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "actions": [action],
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view.id}
        payload["view"] = view.to_api()
    elif channel is not None and message is not None:
        payload["container"] = {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": channel.id,
            "is_ephemeral": False,
        }
        payload["channel"] = {"id": channel.id, "name": channel.name}
        payload["message"] = message.to_api(
            channel.id, ws.bot_profile() if message.bot_id else None
        )
        payload["state"] = {"values": {}}
        payload["response_url"] = response_url
    elif channel is not None and ephemeral is not None:
        # Slack sends no copy of an ephemeral message, only where it was.
        payload["container"] = {
            "type": "message",
            "message_ts": ephemeral.ts,
            "channel_id": channel.id,
            "is_ephemeral": True,
        }
        payload["channel"] = {"id": channel.id, "name": channel.name}
        payload["state"] = {"values": {}}
        payload["response_url"] = response_url
    return payload


def view_submission(
    ws: Workspace,
    user: User,
    view: OpenView,
    state: dict[str, Any],
    *,
    trigger_id: str,
    verification_token: str,
) -> dict[str, Any]:
    """A ``view_submission`` interaction: the modal as open, with the user's input."""
    body = view.to_api()
    body["state"] = state
    return {
        "type": "view_submission",
        "team": {"id": ws.team_id, "domain": ws.domain},
        "user": user_ref(ws, user),
        "api_app_id": ws.app_id,
        "token": verification_token,
        "trigger_id": trigger_id,
        "view": body,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_closed(
    ws: Workspace, user: User, view: dict[str, Any], verification_token: str
) -> dict[str, Any]:
    """A ``view_closed`` interaction: sent when a modal with ``notify_on_close`` is closed."""
    return {
        "type": "view_closed",
        "team": {"id": ws.team_id, "domain": ws.domain},
        "user": user_ref(ws, user),
        "api_app_id": ws.app_id,
        "token": verification_token,
        "view": view,
        "is_cleared": False,
        "is_enterprise_install": False,
        "enterprise": None,
    }


def event_envelope(
    ws: Workspace, event: dict[str, Any], *, event_id: str, verification_token: str
) -> dict[str, Any]:
    """The Events API ``event_callback`` wrapper around one event."""
    return {
        "token": verification_token,
        "team_id": ws.team_id,
        "api_app_id": ws.app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(ws.clock()),
        "authed_users": [ws.bot.id],
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": ws.team_id,
                "user_id": ws.bot.id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{event_id.lower()}",
    }


def channel_type(channel: Channel) -> str:
    """The ``channel_type`` of a message event: ``channel``, ``group`` or ``im``."""
    if channel.is_im:
        return "im"
    return "group" if channel.is_private else "channel"
