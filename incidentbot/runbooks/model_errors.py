"""pydantic's errors on a runbook, in the words of the runbook checker.

:func:`model_error` words an error of the runbook models (with the keys allowed where a key is
unknown); :func:`pydantic_message` words any error with the value that was refused.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from incidentbot.runbooks.definition import Param, Retry, RollbackStep, Runbook, Step, WaitUntil
from incidentbot.runbooks.yaml_lines import Loc


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model a location inside a runbook file is an instance of (for "allowed keys")."""
    if not loc:
        return Runbook
    if loc[0] == "params" and len(loc) == 2:
        return Param
    if loc[0] != "steps" or len(loc) < 2:
        return None
    model: type[BaseModel] = Step
    rest = loc[2:]
    if rest[:1] == ("on_failure",):
        if len(rest) < 2:
            return None
        model, rest = RollbackStep, rest[2:]
    if not rest:
        return model
    if len(rest) == 1:
        return {"retry": Retry, "wait_until": WaitUntil}.get(str(rest[0]))
    return None


_MESSAGES = {
    "string_type": "expected text",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def model_error(error: Any) -> tuple[Loc, str]:
    """Where an error of the runbook models is and what to say about it."""
    loc: Loc = tuple(part for part in error["loc"] if part != "[key]")
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        if parent is RollbackStep and loc[-1] == "on_failure":
            message = "a rollback step cannot have its own on_failure"
        elif parent is RollbackStep and loc[-1] == "always":
            message = (
                "a rollback step cannot be always: make it a main step with always: true "
                "(a clean-up step)"
            )
        else:
            allowed = f" (allowed: {', '.join(_allowed_keys(parent))})" if parent else ""
            message = f"unknown key{allowed}"
    elif kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        message = f"{error.get('input')!r} is not allowed: use {expected.replace(' or ', ', ')}"
    elif kind in ("model_type", "model_attributes_type"):
        model = _model_at(loc)
        keys = f" with {', '.join(_allowed_keys(model))}" if model else ""
        message = f"expected a mapping{keys}, got {error.get('input')!r}"
    elif kind == "too_short" and loc == ("steps",):
        message = "a runbook needs at least one step"
    else:
        message = pydantic_message(error)
    return loc, message


def pydantic_message(error: Any) -> str:
    """pydantic's message, in this module's words, with the value that was refused."""
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        return "missing (required)"
    if kind in _MESSAGES:
        return f"{_MESSAGES[kind]}, got {value!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind != "value_error" and isinstance(value, str | int | float | bool):
        message += f", got {value!r}"
    return message
