"""A runbook's params: turning what a person typed into typed values, and saying what is
expected.

Values arrive as text (``node=rpc-2 force=yes`` in Slack) or already typed (a form, the CLI);
both are checked the same way. Every problem is reported at once, and a secret value is never
repeated in a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from incidentbot.runbooks.definition import Param, Runbook

MASK = "***"


class ParamError(ValueError):
    """The values do not fit the runbook's params; ``problems`` lists ``(param, message)``."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.problems))


def coerce(runbook: Runbook, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Every param of ``runbook`` with its value: given, else its default, else None (optional
    params without a default). Durations become seconds (float). Raises ParamError listing
    unknown params, missing required ones and every value that does not fit."""
    problems: list[tuple[str, str]] = []
    known = ", ".join(runbook.params) or "none"
    for name in raw:
        if name not in runbook.params:
            problems.append((str(name), f"unknown param (params: {known})"))
    values: dict[str, Any] = {}
    for name, param in runbook.params.items():
        given = raw.get(name)
        if given is None or (param.type != "string" and given == ""):
            if param.default is not None:
                values[name] = param.default
            elif param.required:
                problems.append((name, _missing(param)))
            else:
                values[name] = None
            continue
        if param.type == "string" and param.required and given == "":
            problems.append((name, "must not be empty"))
            continue
        try:
            values[name] = param.convert(given)
        except ValueError as exc:
            problems.append((name, str(exc)))
    if problems:
        raise ParamError(problems)
    return values


def _missing(param: Param) -> str:
    if param.type == "enum" and param.values:
        return f"required: one of {', '.join(param.values)}"
    return f"required ({param.type})"


def describe(name: str, param: Param) -> str:
    """One line about a param: ``node: string, required, pattern ^rpc-[0-9]+$ — Node to
    restart``. A secret param's default is never shown."""
    kind = param.type
    if param.type == "enum" and param.values:
        kind = f"enum ({' | '.join(param.values)})"
    parts = [kind]
    if param.required:
        parts.append("required")
    elif param.default is not None:
        parts.append(f"default {param.format_value(param.default)}")
    else:
        parts.append("optional")
    if param.pattern is not None:
        parts.append(f"pattern {param.pattern}")
    if param.min is not None:
        parts.append(f"min {param.min}")
    if param.max is not None:
        parts.append(f"max {param.max}")
    line = f"{name}: {', '.join(parts)}"
    if param.secret:
        line += " (secret)"
    if param.description:
        line += f" — {param.description}"
    return line


def usage(runbook: Runbook) -> str:
    """One line per param (see :func:`describe`), or ``(no params)``."""
    if not runbook.params:
        return "(no params)"
    return "\n".join(describe(name, param) for name, param in runbook.params.items())


def masked(runbook: Runbook, values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` with the value of every secret param replaced by ``***``."""
    out = dict(values)
    for name, param in runbook.params.items():
        if param.secret and out.get(name) is not None:
            out[name] = MASK
    return out
