"""Runbook expression syntax: the sandbox, recognising templates and conditions, compiling.

:data:`ENV` is Jinja2's immutable sandbox bounded by the cost model of
:mod:`incidentbot.runbooks.expr_limits` (see :mod:`incidentbot.runbooks.expr_sandbox`); every
expression is lexed, parsed and compiled in it, and the compiled forms are cached.
:class:`ExpressionError` is the one error of the expression language, here and in
:mod:`incidentbot.runbooks.expr` (rendering and evaluating) and
:mod:`incidentbot.runbooks.expr_refs` (what an expression reads).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from incidentbot.runbooks import expr_sandbox


class ExpressionError(ValueError):
    """An expression cannot be compiled or evaluated; the message names the expression."""

    def __init__(self, message: str, expression: str | None = None):
        super().__init__(message)
        self.message = message
        self.expression = expression


ENV = expr_sandbox.make()


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


def syntax_error(text: str, exc: TemplateSyntaxError) -> ExpressionError:
    """The ExpressionError for a syntax error in ``text`` (with its line if it has several)."""
    where = f" (line {exc.lineno})" if "\n" in text.strip() and exc.lineno else ""
    return ExpressionError(f"{text!r}: syntax error{where}: {exc.message}", text)


@lru_cache(maxsize=2048)
def lex(text: str) -> tuple[tuple[str, str], ...]:
    """The ``(kind, value)`` tokens of ``text``."""
    try:
        return tuple((kind, value) for _, kind, value in ENV.lex(text))
    except TemplateSyntaxError as exc:
        raise syntax_error(text, exc) from None


def single_expression(text: str) -> str | None:
    """The source of the one ``{{ expr }}`` that ``text`` consists of (surrounding whitespace
    aside), or None if ``text`` is anything else."""
    if "{{" not in text:
        return None
    tokens = [t for t in lex(text) if not (t[0] == "data" and not t[1].strip())]
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
    single = single_expression(stripped)
    if single is None:
        raise ExpressionError(
            f"{text!r}: a condition must be one expression, e.g. "
            "'{{ params.force and steps.check.status == \"succeeded\" }}'",
            text,
        )
    return single


def as_template(text: str, condition: bool) -> str:
    """``text`` as a template: a condition is wrapped in ``{{ }}``."""
    return "{{ " + condition_source(text) + " }}" if condition else text


@lru_cache(maxsize=2048)
def parse(source: str, original: str) -> nodes.Template:
    """The syntax tree of the template ``source``; errors name ``original``."""
    try:
        tree = ENV.parse(source)
        ENV.compile(tree)  # unknown filters and tests are found here
    except TemplateSyntaxError as exc:
        raise syntax_error(original, exc) from None
    return tree


@lru_cache(maxsize=2048)
def compiled_template(text: str) -> Any:
    """``text`` compiled as a template, rendered to text."""
    try:
        return ENV.from_string(text)
    except TemplateSyntaxError as exc:
        raise syntax_error(text, exc) from None


@lru_cache(maxsize=2048)
def compiled_expression(source: str, original: str) -> Any:
    """The expression ``source`` compiled to a function of the variables; errors name
    ``original``."""
    try:
        return ENV.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise syntax_error(original, exc) from None


def check(text: str, *, condition: bool = False) -> None:
    """Raise ExpressionError if ``text`` does not compile (a template, or a condition)."""
    source = as_template(text, condition)
    parse(source, text)
