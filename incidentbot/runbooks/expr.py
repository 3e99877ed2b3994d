"""Runbook expressions: Jinja2 in an immutable sandbox.

A string in ``with:`` may hold ``{{ … }}`` expressions; ``when:`` and ``wait_until.check`` are
conditions, written with or without ``{{ }}``. The variables are:

- ``params``: the resolved params (durations as seconds);
- ``steps``: ``steps.<id>.outputs.<name>`` and ``steps.<id>.status`` of earlier steps;
- ``incident``: ``ref``, ``title``, ``severity``, ``status``, ``commander``, ``channel_id``,
  ``fields``;
- ``target``: the value of the param the runbook locks on;
- ``run``: ``run.id``, ``run.requester``;
- ``vars``: the ``runbooks.vars`` mapping from the settings (where things are: sockets, URLs);
- ``outputs``: in ``wait_until.check`` only, the step's latest outputs.

A string that is exactly one ``{{ expr }}`` keeps the expression's type (an int stays an int, a
mapping a mapping); any other string renders to text. Undefined variables are errors, never
empty strings, and the sandbox refuses attribute access to internals and any mutation.

Dry runs (:func:`render_plan`, :func:`condition_plan`) show what cannot be known before the run
(``steps``, ``outputs``) as placeholders such as ``⟨steps.check.outputs.lag⟩``.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

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
# Known only once the run is under way: dry runs show them as placeholders.
PENDING: tuple[str, ...] = ("steps", "outputs")

_FALSE_WORDS = frozenset({"", "false", "no", "off", "0", "none", "null"})
_MAX_REPEAT = 100_000  # characters or items a `*` may produce
_MAX_EXPONENT = 256


class ExpressionError(ValueError):
    """An expression cannot be compiled or evaluated; the message names the expression."""

    def __init__(self, message: str, expression: str | None = None):
        super().__init__(message)
        self.message = message
        self.expression = expression


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, plus limits on ``*`` and ``**`` so one expression cannot eat the memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "**":
            if isinstance(right, int) and not isinstance(right, bool) and right > _MAX_EXPONENT:
                raise SecurityError(f"the exponent {right} is too large (at most {_MAX_EXPONENT})")
            return operator.pow(left, right)
        for seq, count in ((left, right), (right, left)):
            sequence = isinstance(seq, str | list | tuple) and isinstance(count, int)
            if sequence and len(seq) * count > _MAX_REPEAT:
                raise SecurityError(
                    f"repeating {type(seq).__name__} {count} times makes more than "
                    f"{_MAX_REPEAT} items"
                )
        return operator.mul(left, right)


ENV = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def is_template(value: Any) -> bool:
    """True for a string holding an expression, a statement or a comment."""
    return isinstance(value, str) and any(mark in value for mark in ("{{", "{%", "{#"))


def has_template(value: Any) -> bool:
    """True if ``value`` or anything inside it (mappings, lists) is a template string."""
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_template(v) for v in value)
    return is_template(value)


# Parsing


def _syntax_error(text: str, exc: TemplateSyntaxError) -> ExpressionError:
    where = f" (line {exc.lineno})" if "\n" in text.strip() and exc.lineno else ""
    return ExpressionError(f"{text!r}: syntax error{where}: {exc.message}", text)


@lru_cache(maxsize=2048)
def _tokens(text: str) -> tuple[tuple[str, str], ...]:
    try:
        return tuple((kind, value) for _, kind, value in ENV.lex(text))
    except TemplateSyntaxError as exc:
        raise _syntax_error(text, exc) from None


def _single_expression(text: str) -> str | None:
    """The source of the one ``{{ expr }}`` that ``text`` consists of (surrounding whitespace
    aside), or None if ``text`` is anything else."""
    if "{{" not in text:
        return None
    tokens = [t for t in _tokens(text) if not (t[0] == "data" and not t[1].strip())]
    if len(tokens) < 2 or tokens[0][0] != "variable_begin" or tokens[-1][0] != "variable_end":
        return None
    inner = tokens[1:-1]
    if any(kind in ("variable_begin", "variable_end", "data") for kind, _ in inner):
        return None
    return "".join(value for _, value in inner).strip()


def condition_source(text: str) -> str:
    """The expression of a condition: ``{{ params.force }}`` and ``params.force`` give
    ``params.force``."""
    stripped = text.strip()
    if not stripped:
        raise ExpressionError("the condition is empty", text)
    if not is_template(stripped):
        return stripped
    single = _single_expression(stripped)
    if single is None:
        raise ExpressionError(
            f"{text!r}: a condition must be one expression, e.g. "
            "'{{ params.force and steps.check.status == \"succeeded\" }}'",
            text,
        )
    return single


def _as_template(text: str, condition: bool) -> str:
    return "{{ " + condition_source(text) + " }}" if condition else text


@lru_cache(maxsize=2048)
def _parse(source: str, original: str) -> nodes.Template:
    try:
        tree = ENV.parse(source)
        ENV.compile(tree)  # unknown filters and tests are found here
    except TemplateSyntaxError as exc:
        raise _syntax_error(original, exc) from None
    return tree


@lru_cache(maxsize=2048)
def _template(text: str) -> Any:
    try:
        return ENV.from_string(text)
    except TemplateSyntaxError as exc:
        raise _syntax_error(text, exc) from None


@lru_cache(maxsize=2048)
def _expression(source: str, original: str) -> Any:
    try:
        return ENV.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise _syntax_error(original, exc) from None


def check(text: str, *, condition: bool = False) -> None:
    """Raise ExpressionError if ``text`` does not compile (a template, or a condition)."""
    source = _as_template(text, condition)
    _parse(source, text)


def variables(text: str, *, condition: bool = False) -> set[str]:
    """The top-level variable names ``text`` reads (Jinja's own globals such as ``range``
    excluded)."""
    tree = _parse(_as_template(text, condition), text)
    return {name for name in meta.find_undeclared_variables(tree) if name not in ENV.globals}


def references(text: str, *, condition: bool = False) -> set[tuple[str, ...]]:
    """The attribute paths ``text`` reads: ``{{ steps.check.outputs['lag'] }}`` gives
    ``("steps", "check", "outputs", "lag")``. A path stops where an index is computed
    (``params[name]`` gives ``("params",)``). Names bound inside the template (``{% for %}``,
    ``{% set %}``) are left out."""
    tree = _parse(_as_template(text, condition), text)
    free = {name for name in meta.find_undeclared_variables(tree) if name not in ENV.globals}
    found: set[tuple[str, ...]] = set()
    _walk(tree, found)
    return {path for path in found if path[0] in free}


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


# Evaluation


def _describe_undefined(text: str, context: Mapping[str, Any], exc: Exception) -> str:
    """Name the first path ``text`` reads that the context does not have."""
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


def _error(text: str, exc: Exception, context: Mapping[str, Any]) -> ExpressionError:
    if isinstance(exc, ExpressionError):
        return exc
    if isinstance(exc, TemplateSyntaxError):
        return _syntax_error(text, exc)
    if isinstance(exc, SecurityError):
        return ExpressionError(f"{text!r}: not allowed in a runbook expression: {exc}", text)
    if isinstance(exc, UndefinedError):
        return ExpressionError(f"{text!r}: {_describe_undefined(text, context, exc)}", text)
    return ExpressionError(f"{text!r}: cannot evaluate: {exc}", text)


def _defined(value: Any, depth: int = 0) -> Any:
    """Raise the error of an undefined value a native result carries (also inside lists and
    mappings), which would otherwise slip through as an object."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if depth < 32:
        if isinstance(value, dict):
            for item in value.values():
                _defined(item, depth + 1)
        elif isinstance(value, list | tuple):
            for item in value:
                _defined(item, depth + 1)
    return value


def _evaluate(source: str, text: str, context: Mapping[str, Any]) -> Any:
    function = _expression(source, text)
    try:
        return _defined(function(**context))
    except Exception as exc:
        raise _error(text, exc, context) from None


def _render_text(text: str, context: Mapping[str, Any]) -> str:
    template = _template(text)
    try:
        return str(template.render(**context))
    except Exception as exc:
        raise _error(text, exc, context) from None


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template string in ``value`` (recursing into mappings and lists).

    A string that is exactly one ``{{ expr }}`` becomes the expression's value, keeping its
    type; other template strings render to text; everything else is returned unchanged."""
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, context) for item in value]
    if not is_template(value):
        return value
    single = _single_expression(value)
    if single is not None:
        return _evaluate(single, value, context)
    return _render_text(value, context)


def truthy(value: Any) -> bool:
    """Truth of a condition's value. Text is false when it reads false (``false``, ``no``,
    ``off``, ``0``, ``none``, empty), so an output such as ``"false"`` does what it says."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return bool(value)


def condition(text: str | bool, context: Mapping[str, Any]) -> bool:
    """Evaluate a condition, written with or without ``{{ }}``."""
    if isinstance(text, bool):
        return text
    source = condition_source(text)
    value = _evaluate(source, text, context)
    try:
        return truthy(value)
    except Exception as exc:
        raise _error(text, exc, context) from None


# Dry runs


class _Unknown(Exception):
    """A value known only at run time was used in a way that needs its value."""


class _Tracker:
    __slots__ = ("touched",)

    def __init__(self) -> None:
        self.touched = False


class Pending:
    """Stands for a value known only once the run is under way. Reading its attributes gives
    deeper placeholders; using its value (comparing, testing, converting) raises."""

    __slots__ = ("_path", "_tracker")

    def __init__(self, path: tuple[str, ...], tracker: _Tracker):
        self._path = path
        self._tracker = tracker

    def _use(self, *_: Any, **__: Any) -> Any:
        self._tracker.touched = True
        raise _Unknown(".".join(self._path))

    def __getattr__(self, name: str) -> Pending:
        if name.startswith("_"):
            raise AttributeError(name)
        self._tracker.touched = True
        return Pending((*self._path, name), self._tracker)

    def __getitem__(self, key: Any) -> Pending:
        self._tracker.touched = True
        return Pending((*self._path, str(key)), self._tracker)

    def __str__(self) -> str:
        self._tracker.touched = True
        return "⟨" + ".".join(self._path) + "⟩"

    __repr__ = __str__
    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _use
    __len__ = __iter__ = __contains__ = __int__ = __float__ = __index__ = __call__ = _use

    def __hash__(self) -> int:
        return hash(self._path)


def _plan_context(context: Mapping[str, Any], tracker: _Tracker) -> dict[str, Any]:
    out = dict(context)
    for name in PENDING:
        out[name] = Pending((name,), tracker)
    for name in VARIABLES:
        out.setdefault(name, Pending((name,), tracker))
    return out


def _placeholder(source: str) -> str:
    return "⟨" + " ".join(source.split()) + "⟩"


def _plan_evaluate(source: str, text: str, context: Mapping[str, Any]) -> tuple[bool, Any]:
    """(True, value) if the expression is decided without run-time values, else (False, None)."""
    tracker = _Tracker()
    function = _expression(source, text)
    plan_context = _plan_context(context, tracker)
    try:
        value = _defined(function(**plan_context))
    except Exception as exc:
        if tracker.touched or isinstance(exc, _Unknown):
            return False, None
        raise _error(text, exc, plan_context) from None
    if tracker.touched or isinstance(value, Pending):
        return False, None
    return True, value


def _plan_expression(source: str, text: str, context: Mapping[str, Any]) -> Any:
    known, value = _plan_evaluate(source, text, context)
    return value if known else _placeholder(source)


def _plan_text(text: str, context: Mapping[str, Any]) -> str:
    tokens = _tokens(text)
    if any(kind == "block_begin" for kind, _ in tokens):
        tracker = _Tracker()
        plan_context = _plan_context(context, tracker)
        try:
            return str(_template(text).render(**plan_context))
        except Exception as exc:
            if tracker.touched or isinstance(exc, _Unknown):
                return _placeholder(text)
            raise _error(text, exc, plan_context) from None
    out: list[str] = []
    source: list[str] | None = None
    for kind, value in tokens:
        if kind == "variable_begin":
            source = []
        elif kind == "variable_end" and source is not None:
            expression = "".join(source).strip()
            out.append(str(_plan_expression(expression, text, context)))
            source = None
        elif source is not None:
            source.append(value)
        elif kind == "data":
            out.append(value)
    return "".join(out)


def render_plan(value: Any, context: Mapping[str, Any]) -> Any:
    """Like :func:`render`, for a dry run: whatever reads ``steps`` or ``outputs`` (or a
    variable the context lacks, such as ``run`` before the run exists) renders as a
    placeholder such as ``⟨steps.check.outputs.lag⟩`` instead of failing."""
    if isinstance(value, dict):
        return {key: render_plan(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render_plan(item, context) for item in value]
    if not is_template(value):
        return value
    single = _single_expression(value)
    if single is not None:
        return _plan_expression(single, value, context)
    return _plan_text(value, context)


def condition_plan(text: str | bool, context: Mapping[str, Any]) -> bool | None:
    """A condition's value for a dry run, or None if it depends on what only the run will
    know (``params.force or steps.check.outputs.ok`` is decided when ``force`` is true)."""
    if isinstance(text, bool):
        return text
    source = condition_source(text)
    known, value = _plan_evaluate(source, text, context)
    if not known:
        return None
    try:
        return truthy(value)
    except Exception as exc:
        raise _error(text, exc, context) from None
