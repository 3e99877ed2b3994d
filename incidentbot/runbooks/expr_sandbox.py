"""The sandbox runbook expressions run in: Jinja2's immutable sandbox with the cost model of
:mod:`incidentbot.runbooks.expr_limits` applied at every point where a value is made.

Jinja2 offers hooks for calls (``call``) and for the arithmetic operators (``call_binop``);
filters are plain functions, wrapped here; literals, ``~``, loops and output buffers have no
hook, so the code generator writes one: ``environment.bounded_value([...])`` around a list,
tuple or mapping literal, ``environment.bounded_concat(...)`` for ``~``,
``environment.bounded_iter(...)`` around what a ``for`` loops over, and a bounded buffer for
the text of a block (``{% set %}``, macros, ``{% filter %}``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import _PassArg

from incidentbot.runbooks import expr_limits as limits
from incidentbot.runbooks.expr_limits import check_estimate, size


class _CodeGenerator(CodeGenerator):
    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # What the loop iterates over, each item counted against the evaluation's steps.
        counted = nodes.Call(
            nodes.EnvironmentAttribute("bounded_iter"), [node.iter], [], None, None
        )
        args = (node.target, counted, node.body, node.else_, node.test, node.recursive)
        super().visit_For(nodes.For(*args, lineno=node.lineno), frame)

    def _bounded(self, visit: Callable[[Any, Frame], None], node: nodes.Expr, frame: Frame) -> None:
        self.write("environment.bounded_value(")
        visit(node, frame)
        self.write(")")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._bounded(super().visit_List, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._bounded(super().visit_Dict, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx == "load":
            self._bounded(super().visit_Tuple, node, frame)
        else:
            super().visit_Tuple(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.bounded_buffer()")


class _Buffer(list[Any]):
    """The text of a block, refused once it would pass the limit of one value."""

    __slots__ = ("_chars",)

    def __init__(self) -> None:
        super().__init__()
        self._chars = 0

    def _add(self, piece: Any) -> None:
        self._chars += len(piece) if isinstance(piece, str) else 1
        if self._chars > limits.MAX_SIZE:
            raise limits.too_large()

    def append(self, piece: Any) -> None:
        self._add(piece)
        super().append(piece)

    def extend(self, pieces: Iterable[Any]) -> None:
        pieces = tuple(pieces)
        for piece in pieces:
            self._add(piece)
        super().extend(pieces)


class _Formatter(SandboxedFormatter):
    """``str.format`` with every field's width and precision bounded, and the whole text."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self._chars = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        self._chars += limits.format_field_size(value, format_spec)
        check_estimate(self._chars)
        return super().format_field(value, format_spec)


class Environment(ImmutableSandboxedEnvironment):
    """The sandbox, bounded: see the module's docstring."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        limits.check_binop(op, left, right)
        return limits.check_value(self.binop_table[op](left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        limits.tick()
        if isinstance(__obj, LoopContext) and args:  # loop(children) in a recursive loop
            args = (__self.bounded_iter(args[0]), *args[1:])
        args = limits.check_method(__obj, args, kwargs)
        return limits.check_value(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if super().wrap_str_format(value) is None:
            return None
        text: str = value.__self__
        is_format_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one mapping")
                kwargs, args = args[0], ()
            return type(text)(_Formatter(self).vformat(text, args, kwargs))

        return wrapper

    def bounded_value(self, value: Any) -> Any:
        return limits.check_value(value)

    def bounded_concat(self, parts: tuple[Any, ...]) -> str:
        check_estimate(sum(size(p) for p in parts))
        return limits.check_value("".join(str(p) for p in parts))

    def bounded_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        return limits.counted(iterable)

    def bounded_buffer(self) -> _Buffer:
        return _Buffer()


def _finalize(value: Any) -> Any:
    """Every ``{{ }}`` in a rendered template: the value must be small enough to print."""
    return limits.check_value(value)


# Filters: each counts as a step and its result is checked; some are refused before they run.


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _center(args: list[Any], kwargs: dict[str, Any]) -> None:
    width = args[1] if len(args) > 1 else kwargs.get("width", 80)
    check_estimate(max(size(args[0]), limits._int(width)))


def _indent(args: list[Any], kwargs: dict[str, Any]) -> None:
    width = args[1] if len(args) > 1 else kwargs.get("width", 4)
    step = len(width) if isinstance(width, str) else limits._int(width)
    check_estimate(size(args[0]) + (_text(args[0]).count("\n") + 1) * max(0, step))


def _wordwrap(args: list[Any], kwargs: dict[str, Any]) -> None:
    text = _text(args[0])
    width = max(1, limits._int(args[1] if len(args) > 1 else kwargs.get("width", 79), 1))
    wrap = args[3] if len(args) > 3 else kwargs.get("wrapstring")
    joint = len(wrap) if isinstance(wrap, str) else 1
    # Two lines in a row hold more than `width` characters, so there are at most 2n/width + 1.
    lines = 2 * len(text) // width + text.count("\n") + 2
    check_estimate(len(text) + lines * joint)


def _format(args: list[Any], kwargs: dict[str, Any]) -> None:
    if isinstance(args[0], str):
        check_estimate(limits.percent_size(args[0], kwargs or tuple(args[1:])))


def _join(args: list[Any], kwargs: dict[str, Any]) -> None:
    args[0] = list(args[0])
    joint = args[1] if len(args) > 1 else kwargs.get("d", "")
    gaps = max(0, len(args[0]) - 1) * (len(joint) if isinstance(joint, str) else 1)
    check_estimate(sum(size(item) for item in args[0]) + gaps)


def _replace(args: list[Any], kwargs: dict[str, Any]) -> None:
    if len(args) >= 3:
        count = args[3] if len(args) > 3 else kwargs.get("count")
        check_estimate(
            limits.replace_size(args[0], args[1], args[2], -1 if count is None else count)
        )


def _sum(args: list[Any], kwargs: dict[str, Any]) -> None:
    args[0] = list(args[0])
    start = args[2] if len(args) > 2 else kwargs.get("start", 0)
    if isinstance(start, list | tuple) or any(isinstance(i, list | tuple) for i in args[0]):
        check_estimate(size(start) + sum(size(item) for item in args[0]))


def _count_argument(position: int, keyword: str) -> Callable[[list[Any], dict[str, Any]], None]:
    def check(args: list[Any], kwargs: dict[str, Any]) -> None:
        value = args[position] if len(args) > position else kwargs.get(keyword)
        check_estimate(limits._int(value))

    return check


def _tojson(args: list[Any], kwargs: dict[str, Any]) -> None:
    indent = args[1] if len(args) > 1 else kwargs.get("indent")
    check_estimate(size(args[0]) * (2 + max(0, limits._int(indent))))


def _linear_sum(
    environment: Any, iterable: list[Any], attribute: Any = None, start: Any = 0
) -> Any:
    """``sum`` of lists or tuples in one pass (Python's own copies the total at each item)."""
    kind = type(start)
    if attribute is None and kind in (list, tuple) and all(type(i) is kind for i in iterable):
        joined = list(start)
        for item in iterable:
            joined.extend(item)
        return kind(joined)
    return None


_BEFORE: dict[str, Callable[[list[Any], dict[str, Any]], None]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "format": _format,
    "join": _join,
    "replace": _replace,
    "sum": _sum,
    "batch": _count_argument(1, "linecount"),
    "slice": _count_argument(1, "slices"),
    "tojson": _tojson,
}


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    before = _BEFORE.get(name)
    skip = 0 if _PassArg.from_obj(function) is None else 1  # the environment or context

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        limits.tick()
        if before is not None and len(args) > skip:
            rest = list(args[skip:])
            before(rest, kwargs)
            args = (*args[:skip], *rest)
        if name == "sum":
            joined = _linear_sum(*args, **kwargs)
            if joined is not None:
                return limits.check_value(joined)
        return limits.check_value(function(*args, **kwargs))

    return bounded


def make() -> Environment:
    """The environment every runbook expression is compiled in."""
    env = Environment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    env.filters = {name: _bounded_filter(name, f) for name, f in env.filters.items()}
    # Lorem ipsum has no place in a runbook, and its paragraph count is unbounded.
    env.globals.pop("lipsum", None)
    return env
