"""What a runbook expression reads, found without evaluating it.

The checker compares these with what exists (the variables and attributes below, the runbook's
params and earlier steps) to report an unknown param or step when the file is loaded; at run
time, :func:`describe_undefined` names what the context of an undefined error is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import meta, nodes

from incidentbot.runbooks.expr_syntax import ENV, ExpressionError, as_template, is_template, parse

# The variables an expression may read; `outputs` only in `wait_until.check`.
VARIABLES: tuple[str, ...] = ("params", "steps", "incident", "target", "run", "vars")
WAIT_VARIABLES: tuple[str, ...] = (*VARIABLES, "outputs")
INCIDENT_ATTRIBUTES: tuple[str, ...] = (
    "ref",
    "title",
    "severity",
    "status",
    "commander",
    "channel_id",
    "fields",
)
RUN_ATTRIBUTES: tuple[str, ...] = ("id", "requester")
STEP_ATTRIBUTES: tuple[str, ...] = ("outputs", "status")


def variables(text: str, *, condition: bool = False) -> set[str]:
    """The top-level variable names ``text`` reads (Jinja's own globals such as ``range``
    excluded)."""
    return set(_analysed(as_template(text, condition), text)[0])


def references(text: str, *, condition: bool = False) -> set[tuple[str, ...]]:
    """The attribute paths ``text`` reads: ``{{ steps.check.outputs['lag'] }}`` gives
    ``("steps", "check", "outputs", "lag")``. A path stops where an index is computed
    (``params[name]`` gives ``("params",)``). Names bound inside the template (``{% for %}``,
    ``{% set %}``) are left out."""
    return set(_analysed(as_template(text, condition), text)[1])


@lru_cache(maxsize=2048)
def _analysed(source: str, original: str) -> tuple[frozenset[str], frozenset[tuple[str, ...]]]:
    """The free variables and the attribute paths of ``source``, found once per text (a
    runbook file repeats its expressions, and the checker asks for both)."""
    tree = parse(source, original)
    free = frozenset(n for n in meta.find_undeclared_variables(tree) if n not in ENV.globals)
    found: set[tuple[str, ...]] = set()
    _walk(tree, found)
    return free, frozenset(path for path in found if path[0] in free)


def describe_undefined(text: str, context: Mapping[str, Any], exc: Exception) -> str:
    """Name the first path ``text`` reads that the context does not have, for the message of
    the undefined error ``exc``; ``exc``'s own message if every path is there."""
    try:
        paths = sorted(references(text, condition=not is_template(text)))
    except ExpressionError:
        paths = []
    for path in paths:
        current: Any = context
        for depth, part in enumerate(path):
            if not isinstance(current, Mapping):
                break
            if part not in current:
                missing = ".".join(path[: depth + 1])
                if depth == 0:
                    known = ", ".join(sorted(str(k) for k in current))
                    return f"{missing} is undefined (variables: {known})"
                keys = sorted(str(k) for k in current)
                parent = ".".join(path[:depth])
                has = f"{parent} has: {', '.join(keys)}" if keys else f"{parent} is empty"
                return f"{missing} is undefined ({has})"
            current = current[part]
    return str(getattr(exc, "message", None) or exc)


def _walk(node: nodes.Node, found: set[tuple[str, ...]]) -> None:
    path, dynamic = _path_of(node)
    if path is not None:
        found.add(path)
        for arg in dynamic:
            _walk(arg, found)
        return
    for child in node.iter_child_nodes():
        _walk(child, found)


def _path_of(node: nodes.Node) -> tuple[tuple[str, ...] | None, list[nodes.Node]]:
    parts: list[str] = []  # outermost first
    dynamic: list[nodes.Node] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str | int):
                parts.append(str(arg.value))
            else:
                parts.clear()  # what follows a computed index is unknown
                dynamic.append(arg)
            node = node.node
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            return (node.name, *reversed(parts)), dynamic
        else:
            return None, []
