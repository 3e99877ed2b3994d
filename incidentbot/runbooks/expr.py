"""Runbook expressions: rendering ``with:`` templates and evaluating conditions, for real and
for dry runs.

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

The sandbox, parsing, :func:`is_template` and :class:`ExpressionError` (both importable from
here too) are in :mod:`incidentbot.runbooks.expr_syntax`; what an expression reads, which the
checker compares with what exists, is in :mod:`incidentbot.runbooks.expr_refs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Undefined

from incidentbot.runbooks import expr_limits as limits
from incidentbot.runbooks.expr_limits import LimitExceeded, time_budget
from incidentbot.runbooks.expr_refs import VARIABLES, describe_undefined
from incidentbot.runbooks.expr_syntax import (
    ExpressionError,
    compiled_expression,
    compiled_template,
    condition_source,
    is_template,
    lex,
    single_expression,
    syntax_error,
)

__all__ = [
    "ExpressionError",
    "Pending",
    "condition",
    "condition_plan",
    "is_template",
    "render",
    "render_plan",
    "time_budget",
    "truthy",
]

# Known only once the run is under way: dry runs show them as placeholders.
PENDING: tuple[str, ...] = ("steps", "outputs")

_FALSE_WORDS = frozenset({"", "false", "no", "off", "0", "none", "null"})


# Evaluation


def _error(text: str, exc: Exception, context: Mapping[str, Any]) -> ExpressionError:
    if isinstance(exc, ExpressionError):
        return exc
    if isinstance(exc, TemplateSyntaxError):
        return syntax_error(text, exc)
    if isinstance(exc, LimitExceeded):
        return ExpressionError(f"{text!r}: refused: {exc}", text)
    if isinstance(exc, RecursionError):
        return ExpressionError(f"{text!r}: refused: calls nested too deeply", text)
    if isinstance(exc, SecurityError):
        return ExpressionError(f"{text!r}: not allowed in a runbook expression: {exc}", text)
    if isinstance(exc, UndefinedError):
        return ExpressionError(f"{text!r}: {describe_undefined(text, context, exc)}", text)
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


def _call(function: Any, context: Mapping[str, Any]) -> Any:
    """The value of a compiled expression, within the limits of one evaluation."""
    with limits.evaluation():
        return limits.check_value(_defined(function(**context)))


def _too_much_text() -> LimitExceeded:
    return LimitExceeded(
        f"the rendered text would be over {limits.MAX_SIZE:,} characters "
        "(the limit of a rendered template)"
    )


def _generate(template: Any, context: Mapping[str, Any]) -> str:
    """A compiled template rendered, within the limits of one evaluation: the text is
    refused as soon as it passes the limit, not once it is all in memory."""
    out: list[str] = []
    chars = 0
    with limits.evaluation():
        for piece in template.generate(**context):
            chars += len(piece)
            if chars > limits.MAX_SIZE:
                raise _too_much_text()
            out.append(piece)
    return "".join(out)


def _evaluate(source: str, text: str, context: Mapping[str, Any]) -> Any:
    function = compiled_expression(source, text)
    try:
        return _call(function, context)
    except Exception as exc:
        raise _error(text, exc, context) from None


def _render_text(text: str, context: Mapping[str, Any]) -> str:
    template = compiled_template(text)
    try:
        return _generate(template, context)
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
    single = single_expression(value)
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
    function = compiled_expression(source, text)
    plan_context = _plan_context(context, tracker)
    try:
        value = _call(function, plan_context)
    except Exception as exc:
        if not isinstance(exc, LimitExceeded) and (tracker.touched or isinstance(exc, _Unknown)):
            return False, None
        raise _error(text, exc, plan_context) from None
    if tracker.touched or isinstance(value, Pending):
        return False, None
    return True, value


def _plan_expression(source: str, text: str, context: Mapping[str, Any]) -> Any:
    known, value = _plan_evaluate(source, text, context)
    return value if known else _placeholder(source)


def _plan_text(text: str, context: Mapping[str, Any]) -> str:
    tokens = lex(text)
    if any(kind == "block_begin" for kind, _ in tokens):
        tracker = _Tracker()
        plan_context = _plan_context(context, tracker)
        try:
            return _generate(compiled_template(text), plan_context)
        except Exception as exc:
            limited = isinstance(exc, LimitExceeded)
            if not limited and (tracker.touched or isinstance(exc, _Unknown)):
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
    rendered = "".join(out)
    if len(rendered) > limits.MAX_SIZE:
        raise _error(text, _too_much_text(), context)
    return rendered


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
    single = single_expression(value)
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
