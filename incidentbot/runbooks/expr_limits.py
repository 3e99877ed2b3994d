"""The cost model of runbook expressions: every operation is bounded before it runs.

An expression is evaluated in the bot's own process (planning a run happens while Slack waits),
so no expression may hold the interpreter or eat its memory. Three kinds of bound apply:

- **the size of every value**, checked *before* the operation that would make it where the
  size follows from the operands (``**`` and ``*`` on numbers, ``*`` and ``+`` on text and
  lists, widths and precisions in ``%``, ``format``, ``center``, ``ljust``, ``indent``,
  ``wordwrap``, ``replace``, ``join``, ``batch``, ``slice``, ``tojson``), and after it
  everywhere else (every filter, call and literal): at most :data:`MAX_SIZE` characters or items
  (counted through nested lists and mappings, so a list of references to a long string is as
  large as its text), and numbers of at most :data:`MAX_INT_BITS` bits;
- **work**: every loop iteration and every call counts against :data:`MAX_STEPS` per evaluation,
  the values one evaluation makes add up to at most :data:`MAX_PRODUCED` characters or items,
  and a rendered template produces at most :data:`MAX_SIZE` characters;
- **time**: the same counting points check a deadline (:data:`EVAL_SECONDS` per evaluation, or
  less inside :func:`time_budget`). Each single operation is small by the bounds above, so the
  deadline is met to within milliseconds and no operation holds the interpreter lock for long.
  The deadline is in the evaluating thread's CPU time: what an expression costs the bot is the
  work it does, and a machine busy with other work (during an outage, typically) must not
  refuse a runbook whose expressions are cheap only because the thread waited for a core.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

MAX_SIZE = 100_000  # characters or items of one value, and characters of a rendered template
MAX_INT_BITS = 4096  # bits of an integer (2**256 and wei amounts fit; 2**4096 does not)
MAX_STEPS = 100_000  # loop iterations and calls in one evaluation, nested loops together
MAX_PRODUCED = 2_000_000  # characters or items of all the values one evaluation makes
EVAL_SECONDS = 1.0  # CPU time one evaluation may take
# The evaluating thread's CPU time (see the module docstring); read once every CLOCK_EVERY steps,
# since each step is small and the clock is a system call.
_clock = time.thread_time
CLOCK_EVERY = 16


class LimitExceeded(Exception):
    """An expression was refused by the cost model; the message names the limit."""


def too_large() -> LimitExceeded:
    """The refusal of a value over :data:`MAX_SIZE` (an estimate is an upper bound, so the
    message names the limit, not the estimate)."""
    return LimitExceeded(
        f"the result would be over {MAX_SIZE:,} characters or items (the limit of one value)"
    )


# Work and time


@dataclass
class _Budget:
    deadline: float
    seconds: float
    what: str = "one evaluation"
    steps: int = MAX_STEPS
    produced: int = 0
    unclocked: int = 0  # steps since the clock was last read

    def charge(self, amount: int) -> None:
        self.produced += amount
        if self.produced > MAX_PRODUCED:
            raise LimitExceeded(
                f"it would make over {MAX_PRODUCED:,} characters or items in all "
                "(the limit of one evaluation)"
            )

    def tick(self, count: int = 1) -> None:
        self.steps -= count
        if self.steps < 0:
            raise LimitExceeded(
                f"over {MAX_STEPS:,} loop iterations and calls (the limit of one evaluation)"
            )
        self.unclocked += count
        if count and self.unclocked < CLOCK_EVERY:
            return
        self.unclocked = 0
        if _clock() > self.deadline:
            raise LimitExceeded(
                f"it used over {self.seconds:g} s of CPU time (the time limit of {self.what})"
            )


_budget: ContextVar[_Budget | None] = ContextVar("runbook_expression_budget", default=None)
_outer_deadline: ContextVar[tuple[float, float, str] | None] = ContextVar(
    "runbook_expression_deadline", default=None
)


def tick(count: int = 1) -> None:
    """Count ``count`` loop iterations or calls against the evaluation under way (if any)."""
    budget = _budget.get()
    if budget is not None:
        budget.tick(count)


@contextmanager
def evaluation() -> Iterator[None]:
    """One evaluation: a fresh count of steps and a deadline, never later than the enclosing
    :func:`time_budget`'s."""
    budget = _Budget(deadline=_clock() + EVAL_SECONDS, seconds=EVAL_SECONDS)
    outer = _outer_deadline.get()
    if outer is not None and outer[0] < budget.deadline:
        budget.deadline, budget.seconds, budget.what = outer
    token = _budget.set(budget)
    try:
        budget.tick(0)
        yield
    finally:
        _budget.reset(token)


@contextmanager
def time_budget(seconds: float, what: str) -> Iterator[None]:
    """Every evaluation inside shares one deadline ``seconds`` from now (e.g. all those of a
    plan computed while Slack waits for the answer); ``what`` names it in the message."""
    token = _outer_deadline.set((_clock() + seconds, seconds, what))
    try:
        yield
    finally:
        _outer_deadline.reset(token)


def counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """``iterable``, counting each item as one step."""
    for item in iterable:
        tick()
        yield item


# Sizes


_FLAT = frozenset({int, float, bool, type(None)})  # one item each, without looking inside


def size(value: Any, limit: int = MAX_SIZE) -> int:
    """Characters or items of ``value``, counted through lists, tuples, sets and mappings: a
    string counts its characters, every other leaf and every nested container one (an empty
    string or list counts one too), so a list of references to one long string is as large
    as all their text. Stops counting once past ``limit``, so it costs at most that many
    steps (plus one pass over a flat list)."""
    containers = dict | list | tuple | set | frozenset
    total = -1 if isinstance(value, containers) and value else 0  # the outermost one is free
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item) or 1
        elif isinstance(item, containers):
            inside: list[Any] = (
                [*item.keys(), *item.values()] if isinstance(item, dict) else list(item)
            )
            nested = [x for x in inside if type(x) not in _FLAT]
            total += 1 + len(inside) - len(nested)
            stack.extend(nested)
        elif isinstance(item, range):
            total += len(item) or 1
        else:
            total += 1
        if total > limit:
            return total
    return total


def check_value(value: Any) -> Any:
    """``value``, or LimitExceeded if it is too large."""
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _too_many_bits()
    amount = size(value)
    if amount > MAX_SIZE:
        raise too_large()
    budget = _budget.get()
    if budget is not None:
        budget.charge(amount)
    return value


def check_estimate(estimate: int) -> None:
    if estimate > MAX_SIZE:
        raise too_large()


def _too_many_bits() -> LimitExceeded:
    return LimitExceeded(f"the number would be over {MAX_INT_BITS} bits (the limit of a number)")


def _int(value: Any, default: int = 0) -> int:
    """An int argument as given, or ``default`` if it is not one (the call will say why)."""
    return value if isinstance(value, int) else default


def _text_size(value: Any) -> int:
    """Characters ``str(value)`` may have, roughly (numbers: their digits)."""
    if isinstance(value, int):
        return 2 + value.bit_length() * 30103 // 100000
    if isinstance(value, float):
        return 24
    return size(value)


# Operators


def check_binop(op: str, left: Any, right: Any) -> None:
    """Refuse ``left op right`` before computing it if its result would be too large."""
    ints = (
        isinstance(left, int)
        and isinstance(right, int)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    )
    if op == "**" and ints and right > 0 and abs(left) > 1:
        if (abs(left).bit_length() - 1) * right + 1 > MAX_INT_BITS:  # 2**n has n + 1 bits
            raise _too_many_bits()
    elif op == "*" and ints and left and right:
        if abs(left).bit_length() + abs(right).bit_length() - 1 > MAX_INT_BITS:
            raise _too_many_bits()
    elif op == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, str | bytes | list | tuple) and isinstance(count, int):
                check_estimate(size(seq) * max(count, 0))
    elif op == "+" and isinstance(left, str | bytes | list | tuple):
        check_estimate(size(left) + size(right))
    elif op == "%" and isinstance(left, str | bytes):
        fmt = left if isinstance(left, str) else left.decode("latin-1")
        check_estimate(percent_size(fmt, right))


_PERCENT = re.compile(
    r"%(?:\(([^)]*)\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?([diouxXeEfFgGcrsa%])"
)


def _number(digits: str) -> int:
    return int(digits) if len(digits) < 10 else MAX_SIZE + 1


def percent_size(fmt: str, args: Any) -> int:
    """An upper bound of the length of ``fmt % args``: the format's own text plus, for each
    conversion, its width, its precision and its argument's text."""
    positional = list(args) if isinstance(args, tuple) else [args]
    mapping = args if isinstance(args, Mapping) else None
    total, index = len(fmt), 0
    for match in _PERCENT.finditer(fmt):
        key, width, precision, conversion = match.groups()
        if conversion == "%":
            continue
        extent = 0
        for part in (width, precision):
            if part == "*":
                extent += abs(_int(positional[index] if index < len(positional) else 0))
                index += 1
            elif part:
                extent += _number(part)
        if key is not None and mapping is not None:
            value = mapping.get(key)
        else:
            value = positional[index] if index < len(positional) else None
            index += 1
        total += extent + _text_size(value)
        if total > MAX_SIZE:
            break
    return total


_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?[a-zA-Z%]?")


def format_field_size(value: Any, spec: str) -> int:
    """An upper bound of the length of ``format(value, spec)``."""
    match = _SPEC.fullmatch(spec)
    extent = 0
    if match is not None:
        extent = sum(_number(part) for part in match.groups() if part)
    return extent + _text_size(value)


# Calls


def check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a call of a text or number method whose result would be too large; returns the
    arguments to call it with (an iterable given to ``join`` is read once, here)."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")

    def arg(index: int, keyword: str, default: Any = None) -> Any:
        return args[index] if len(args) > index else kwargs.get(keyword, default)

    if isinstance(owner, int) and name == "to_bytes":
        check_estimate(_int(arg(0, "length", 1)))
    if not isinstance(owner, str | bytes | bytearray):
        return args
    length = len(owner)
    if name in ("center", "ljust", "rjust", "zfill"):
        check_estimate(max(length, _int(arg(0, "width"))))
    elif name == "expandtabs":
        tabs = owner.count("\t" if isinstance(owner, str) else b"\t")
        check_estimate(length + tabs * max(0, _int(arg(0, "tabsize", 8))))
    elif name == "replace" and len(args) >= 2:
        check_estimate(replace_size(owner, args[0], args[1], arg(2, "count", -1)))
    elif name == "translate" and isinstance(arg(0, "table"), Mapping):
        longest = max((len(v) for v in arg(0, "table").values() if isinstance(v, str)), default=1)
        check_estimate(length * max(1, longest))
    elif name == "join" and args:
        items = list(args[0])
        check_estimate(sum(size(i) for i in items) + length * max(0, len(items) - 1))
        return (items, *args[1:])
    return args


def replace_size(text: Any, old: Any, new: Any, count: Any = -1) -> int:
    """An upper bound of the length of ``text.replace(old, new, count)``."""
    if not isinstance(text, str | bytes) or type(old) is not type(text):
        return size(text)
    found = len(text) + 1 if not old else text.count(old)
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    grows = max(0, len(new) - len(old)) if isinstance(new, str | bytes) else 0
    return len(text) + found * grows
