"""Reading runbook files and checking everything about them, with line numbers.

Every problem of every file is reported, never just the first: YAML syntax, unknown or missing
keys, wrong types, duplicate step ids, unknown actions and action inputs, literal inputs the
action would refuse, expressions that do not compile or read what does not exist (an unknown
param, a step that does not exist or has not run yet), ``target`` naming no param, and runbook
names used by more than one file. Each :class:`Problem` prints as ``path:LINE: field: message``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ValidationError

from incidentbot.runbooks import expr
from incidentbot.runbooks.actions.base import Action
from incidentbot.runbooks.definition import Param, Retry, RollbackStep, Runbook, Step, WaitUntil

DEFAULT_DIR = Path("runbooks")
PATTERNS = ("*.yaml", "*.yml")

Loc = tuple[str | int, ...]


class ActionRegistry(Protocol):
    """What the loader needs of the action registry."""

    def get(self, name: str) -> Action | None: ...

    def names(self) -> list[str]: ...


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a runbook file. ``line`` is 1-based (None: the whole file);
    ``field`` is the path of the key, e.g. ``steps[1].with.url`` (empty: the file itself)."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


class RunbookError(Exception):
    """A runbook file cannot be used; ``problems`` lists everything wrong with it."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class Catalog:
    """The runbooks found in the configured directories, by name, and every problem met."""

    problems: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    _by_name: dict[str, tuple[Runbook, Path]] = field(default_factory=dict, repr=False)

    def get(self, name: str) -> Runbook | None:
        entry = self._by_name.get(name)
        return entry[0] if entry else None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    @property
    def runbooks(self) -> list[Runbook]:
        """The valid runbooks, sorted by name."""
        return [self._by_name[name][0] for name in self.names()]

    def source_of(self, name: str) -> Path | None:
        entry = self._by_name.get(name)
        return entry[1] if entry else None

    @property
    def problem_files(self) -> list[str]:
        """The files that have problems, in the order first reported."""
        return list(dict.fromkeys(p.file for p in self.problems))


# Loading


def load_file(path: str | Path, actions: ActionRegistry) -> Runbook:
    """Read and check one runbook file; raises RunbookError listing every problem."""
    runbook, problems, _ = _load(Path(path), actions)
    if problems or runbook is None:
        raise RunbookError(problems)
    return runbook


def load_text(text: str, source: str, actions: ActionRegistry) -> Runbook:
    """Check a runbook given as text (``source`` names it in problems)."""
    runbook, problems, _ = _check_text(text, source, actions)
    if problems or runbook is None:
        raise RunbookError(problems)
    return runbook


def load_dirs(dirs: Iterable[str | Path], actions: ActionRegistry) -> Catalog:
    """Every runbook in the configured directories (``*.yaml`` and ``*.yml``, sorted by file
    name, directory by directory). A missing directory is a problem unless it is the default
    ``runbooks``. Invalid files are left out and their problems listed in ``problems``; a
    runbook name used by more than one file is left out too (which one was meant is unknown)."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in dirs:
        directory = Path(raw)
        if not directory.exists():
            if directory != DEFAULT_DIR:
                problems.append(Problem(str(directory), None, "", "runbook directory not found"))
            continue
        if not directory.is_dir():
            problems.append(Problem(str(directory), None, "", "not a directory"))
            continue
        files.extend(_files_in(directory))
    return _catalog(files, problems, actions)


def load_paths(paths: Iterable[str | Path], actions: ActionRegistry) -> Catalog:
    """Like :func:`load_dirs` for paths given explicitly: each a runbook file or a directory;
    any missing path is a problem."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(_files_in(path))
        elif path.exists():
            files.append(path)
        else:
            problems.append(Problem(str(path), None, "", "no such file or directory"))
    return _catalog(files, problems, actions)


def _files_in(directory: Path) -> list[Path]:
    found = {p for pattern in PATTERNS for p in directory.glob(pattern) if p.is_file()}
    return sorted(found, key=lambda p: p.name)


def _catalog(files: list[Path], problems: list[Problem], actions: ActionRegistry) -> Catalog:
    catalog = Catalog(problems=problems, files=list(dict.fromkeys(files)))
    seen: dict[str, list[tuple[Path, int | None]]] = {}
    loaded: dict[Path, Runbook] = {}
    for path in catalog.files:
        runbook, file_problems, name_at = _load(path, actions)
        catalog.problems.extend(file_problems)
        if name_at is not None:
            seen.setdefault(name_at[0], []).append((path, name_at[1]))
        if runbook is not None and not file_problems:
            loaded[path] = runbook
    for name, places in seen.items():
        if len(places) < 2:
            continue
        for path, line in places:
            others = ", ".join(
                f"{other}:{other_line}" if other_line else str(other)
                for other, other_line in places
                if other != path
            )
            catalog.problems.append(
                Problem(str(path), line, "name", f"runbook name {name!r} is also used by {others}")
            )
            loaded.pop(path, None)
    for path, runbook in loaded.items():
        catalog._by_name[runbook.name] = (runbook, path)
    return catalog


def _load(
    path: Path, actions: ActionRegistry
) -> tuple[Runbook | None, list[Problem], tuple[str, int | None] | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, [Problem(str(path), None, "", f"not UTF-8 text: {exc.reason}")], None
    except OSError as exc:
        return None, [Problem(str(path), None, "", f"cannot read: {exc.strerror or exc}")], None
    return _check_text(text, str(path), actions)


def _check_text(
    text: str, source: str, actions: ActionRegistry
) -> tuple[Runbook | None, list[Problem], tuple[str, int | None] | None]:
    """The runbook (None if it has problems), its problems sorted by line, and the runbook's
    name with its line if the file names one (for the duplicate-name check)."""
    problems: list[Problem] = []
    try:
        data, lines, duplicates = _parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        context = exc.context or ""
        if context and exc.context_mark and exc.context_mark.line + 1 != line:
            context += f" (line {exc.context_mark.line + 1})"
        message = " ".join(p for p in (context, exc.problem) if p) or "invalid YAML"
        return None, [Problem(source, line, "", f"invalid YAML: {message}")], None
    except yaml.YAMLError as exc:
        return None, [Problem(source, None, "", f"invalid YAML: {exc}")], None
    if data is None:
        message = "the file is empty: a runbook is a mapping with at least name and steps"
        return None, [Problem(source, 1, "", message)], None
    if not isinstance(data, dict):
        message = f"a runbook is a mapping with name, steps, …; this file holds {_kind(data)}"
        return None, [Problem(source, 1, "", message)], None

    checker = _Checker(source, lines, actions)
    for loc, line, first_line in duplicates:
        message = f"duplicate key {loc[-1]!r} (first on line {first_line}; the last one counts)"
        checker.problems.append(Problem(source, line, format_loc(loc), message))
    runbook: Runbook | None = None
    try:
        runbook = Runbook.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            checker.add_pydantic(error)
    checker.check(data)
    problems = sorted(checker.problems, key=lambda p: p.line or 0)
    name = data.get("name")
    name_at = (name, lines.get(("name",))) if isinstance(name, str) else None
    return (None if problems else runbook), problems, name_at


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    return f"a single value ({type(value).__name__})"


def _parse_yaml(text: str) -> tuple[Any, dict[Loc, int], list[tuple[Loc, int, int]]]:
    """The data, the 1-based line of every key and list item, and duplicate keys (with their
    line and the first one's)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Loc, int] = {}
        duplicates: list[tuple[Loc, int, int]] = []
        if node is not None:
            _map_lines(loader, node, (), lines, duplicates, set())
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, lines, duplicates


def _map_lines(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    loc: Loc,
    lines: dict[Loc, int],
    duplicates: list[tuple[Loc, int, int]],
    visited: set[int],
) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if id(node) in visited:  # an alias: its lines are those of the anchor
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if isinstance(key_node, yaml.ScalarNode):
                key = loader.construct_object(key_node)
            else:
                key = key_node.start_mark.line  # complex keys are refused by the models
            child = (*loc, key if isinstance(key, str | int) else str(key))
            line = key_node.start_mark.line + 1
            if child in lines and isinstance(key, str):
                duplicates.append((child, line, lines[child]))
                continue
            lines[child] = line
            _map_lines(loader, value_node, child, lines, duplicates, visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _map_lines(loader, item, (*loc, index), lines, duplicates, visited)


def format_loc(loc: Sequence[Any]) -> str:
    """``("steps", 1, "with", "url")`` → ``steps[1].with.url``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# Checking


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


class _Checker:
    def __init__(self, source: str, lines: dict[Loc, int], actions: ActionRegistry):
        self.source = source
        self.lines = lines
        self.actions = actions
        self.problems: list[Problem] = []
        self.params: dict[Any, Any] = {}
        self.param_names: list[str] = []
        self.step_ids: dict[str, Loc] = {}
        self.step_uses: dict[str, Any] = {}
        self.polling: set[str] = set()
        self.rollback_of: dict[str, Any] = {}

    def line_of(self, loc: Loc) -> int | None:
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None

    def add(self, loc: Loc, message: str) -> None:
        self.problems.append(Problem(self.source, self.line_of(loc), format_loc(loc), message))

    def add_pydantic(self, error: Any) -> None:
        loc: Loc = tuple(part for part in error["loc"] if part != "[key]")
        kind = error["type"]
        if kind == "extra_forbidden":
            parent = _model_at(loc[:-1])
            if parent is RollbackStep and loc[-1] == "on_failure":
                message = "a rollback step cannot have its own on_failure"
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
            message = _pydantic_message(error)
        self.add(loc, message)

    # The whole file (on the raw data, so that these are found even when the models refuse
    # something else in the file).

    def check(self, data: dict[str, Any]) -> None:
        params = data.get("params")
        self.params = params if isinstance(params, dict) else {}
        self.param_names = [str(k) for k in self.params]
        self.check_target(data.get("target"))
        steps = data.get("steps")
        if not isinstance(steps, list):
            return
        self.step_ids = self.check_step_ids(steps)
        self.step_uses = {
            step["id"]: step.get("uses")
            for _, step in _iter_steps(steps)
            if isinstance(step.get("id"), str)
        }
        self.polling = {
            step["id"]
            for _, step in _iter_steps(steps)
            if isinstance(step.get("id"), str) and step.get("wait_until")
        }
        self.rollback_of = {
            rollback["id"]: step.get("id")
            for step in steps
            if isinstance(step, dict) and isinstance(step.get("on_failure"), list)
            for rollback in step["on_failure"]
            if isinstance(rollback, dict) and isinstance(rollback.get("id"), str)
        }
        self.check_steps(steps)

    def check_target(self, target: Any) -> None:
        if not isinstance(target, str):
            return
        if expr.is_template(target):  # a lock name built from params and vars
            self.check_expression(("target",), target, _TARGET_SCOPE, condition=False)
            return
        if target not in self.params:
            known = ", ".join(self.param_names) or "this runbook has none"
            self.add(("target",), f"{target!r} is not a param (params: {known})")
        elif isinstance(self.params[target], dict) and self.params[target].get("secret") is True:
            self.add(("target",), f"param {target!r} is secret; a lock target is shown to people")

    def check_step_ids(self, steps: list[Any]) -> dict[str, Loc]:
        first: dict[str, Loc] = {}
        for loc, step in _iter_steps(steps):
            step_id = step.get("id")
            if not isinstance(step_id, str):
                continue
            id_loc = (*loc, "id")
            if step_id in first:
                earlier = first[step_id]
                self.add(
                    id_loc,
                    f"duplicate step id {step_id!r} (first on line {self.line_of(earlier)})",
                )
                self.add(
                    earlier,
                    f"step id {step_id!r} is used again on line {self.line_of(id_loc)}",
                )
            else:
                first[step_id] = id_loc
        return first

    def check_steps(self, steps: list[Any]) -> None:
        earlier: list[str] = []  # main steps before the current one
        for index, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            loc: Loc = ("steps", index)
            step_id = step.get("id") if isinstance(step.get("id"), str) else None
            self.check_step(loc, step, readable=list(earlier), own=step_id, rollback_of=None)
            rollbacks = step.get("on_failure")
            if isinstance(rollbacks, list):
                readable = [*earlier, *([step_id] if step_id else [])]
                for j, rollback in enumerate(rollbacks):
                    if not isinstance(rollback, dict):
                        continue
                    rb_id = rollback.get("id") if isinstance(rollback.get("id"), str) else None
                    self.check_step(
                        (*loc, "on_failure", j),
                        rollback,
                        readable=list(readable),
                        own=rb_id,
                        rollback_of=step_id,
                    )
                    if rb_id:
                        readable.append(rb_id)
            if step_id:
                earlier.append(step_id)

    def check_step(
        self,
        loc: Loc,
        step: dict[str, Any],
        *,
        readable: list[str],
        own: str | None,
        rollback_of: str | None,
    ) -> None:
        uses = step.get("uses")
        action = self.check_uses(loc, uses) if isinstance(uses, str) and uses else None
        inputs = step.get("with", {})
        if isinstance(inputs, dict) and action is not None:
            self.check_inputs(loc, action, inputs)
        scope = _Scope(readable=readable, own=own, rollback_of=rollback_of, action=action)
        if isinstance(inputs, dict):
            for where, text in _strings(inputs, (*loc, "with")):
                if expr.is_template(text):
                    self.check_expression(where, text, scope, condition=False)
        when = step.get("when")
        if isinstance(when, str):
            self.check_expression((*loc, "when"), when, scope, condition=True)
        wait = step.get("wait_until")
        if isinstance(wait, dict) and isinstance(wait.get("check"), str):
            self.check_expression(
                (*loc, "wait_until", "check"), wait["check"], scope, condition=True, wait=True
            )

    def check_uses(self, loc: Loc, uses: str) -> Action | None:
        action = self.actions.get(uses)
        if action is None:
            names = sorted(self.actions.names())
            close = difflib.get_close_matches(uses, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.add((*loc, "uses"), f"unknown action {uses!r} ({hint}known: {', '.join(names)})")
        return action

    def check_inputs(self, loc: Loc, action: Action, inputs: dict[str, Any]) -> None:
        model = action.Inputs
        accepted: dict[str, str] = {}
        for name, info in model.model_fields.items():
            accepted[name] = name
            if info.alias:
                accepted[info.alias] = name
        allowed = ", ".join(info.alias or name for name, info in model.model_fields.items())
        for key in inputs:
            if str(key) not in accepted:
                self.add(
                    (*loc, "with", str(key)),
                    f"unknown input {key!r} for {action.name} (inputs: {allowed or 'none'})",
                )
        known = {k: v for k, v in inputs.items() if str(k) in accepted}
        given = {accepted[str(k)] for k in known}
        literal = {k: v for k, v in known.items() if not expr.has_template(v)}
        try:
            model.model_validate(literal)
        except ValidationError as exc:
            for error in exc.errors():
                where = error["loc"]
                if not where:
                    # A check across inputs: only meaningful when none is an expression.
                    if len(literal) == len(known):
                        self.add((*loc, "with"), _pydantic_message(error))
                    continue
                name = accepted.get(str(where[0]), str(where[0]))
                if error["type"] == "missing":
                    if name in given:
                        continue  # given as an expression: checked when the step runs
                    self.add((*loc, "with"), f"missing required input {name!r} for {action.name}")
                elif error["type"] != "extra_forbidden":
                    self.add((*loc, "with", *where), _pydantic_message(error))

    def check_expression(
        self, loc: Loc, text: str, scope: _Scope, *, condition: bool, wait: bool = False
    ) -> None:
        try:
            names = expr.variables(text, condition=condition)
            paths = expr.references(text, condition=condition)
        except expr.ExpressionError as exc:
            self.add(loc, exc.message)
            return
        allowed = expr.WAIT_VARIABLES if wait else expr.VARIABLES
        for name in sorted(names - set(allowed)):
            if name == "outputs":
                self.add(
                    loc,
                    f"{text!r}: `outputs` is only available in wait_until.check "
                    "(elsewhere use steps.<id>.outputs)",
                )
            else:
                self.add(
                    loc,
                    f"{text!r}: unknown variable {name!r} (available: {', '.join(allowed)})",
                )
        for path in sorted(paths):
            problem = self.reference_problem(path, scope, wait=wait)
            if problem:
                self.add(loc, f"{text!r}: {problem}")

    def reference_problem(self, path: tuple[str, ...], scope: _Scope, *, wait: bool) -> str:
        root, rest = path[0], path[1:]
        if root == "params" and rest and rest[0] not in self.params:
            known = ", ".join(self.param_names)
            where = f"params: {known}" if known else "this runbook has no params"
            return f"unknown param {rest[0]!r} ({where})"
        if root == "incident" and rest and rest[0] not in expr.INCIDENT_ATTRIBUTES:
            return f"incident has no {rest[0]!r} (incident: {', '.join(expr.INCIDENT_ATTRIBUTES)})"
        if root == "run" and rest and rest[0] not in expr.RUN_ATTRIBUTES:
            return f"run has no {rest[0]!r} (run: {', '.join(expr.RUN_ATTRIBUTES)})"
        if root == "outputs" and wait and rest:
            return _output_problem(scope.action, rest[0])
        if root == "steps" and rest:
            return self.step_problem(rest, scope)
        return ""

    def step_problem(self, rest: tuple[str, ...], scope: _Scope) -> str:
        step_id = rest[0]
        if step_id not in self.step_ids:
            known = ", ".join(self.step_ids) or "none"
            return f"no step {step_id!r} (steps: {known})"
        if step_id == scope.own:
            return (
                f"step {step_id!r} cannot read its own outputs here "
                "(in wait_until.check, `outputs` is this step's latest outputs)"
            )
        if step_id not in scope.readable:
            owner = self.rollback_of.get(step_id)
            if owner is not None and owner != scope.rollback_of:
                return (
                    f"step {step_id!r} is a rollback step: it runs only if {owner!r} fails, "
                    "and then the run stops"
                )
            if scope.rollback_of is None:
                return f"step {step_id!r} runs later: a step can only read the steps before it"
            return (
                f"step {step_id!r} is not run before this rollback step: a rollback step can "
                f"read {scope.rollback_of!r}, the steps before it and earlier rollback steps "
                "of the same on_failure"
            )
        if len(rest) < 2:
            return ""
        if rest[1] not in expr.STEP_ATTRIBUTES:
            return (
                f"steps.{step_id}.{rest[1]}: a step has only outputs and status "
                f"(steps.{step_id}.outputs.<name>, steps.{step_id}.status)"
            )
        if rest[1] == "outputs" and len(rest) > 2:
            if rest[2] == "polls" and step_id in self.polling:
                return ""  # how many checks a wait_until step made
            return _output_problem(self.action_of(step_id), rest[2])
        return ""

    def action_of(self, step_id: str) -> Action | None:
        uses = self.step_uses.get(step_id)
        return self.actions.get(uses) if isinstance(uses, str) else None


@dataclass(frozen=True)
class _Scope:
    readable: list[str]
    own: str | None
    rollback_of: str | None
    action: Action | None


_TARGET_SCOPE = _Scope(readable=[], own=None, rollback_of=None, action=None)


def _output_problem(action: Action | None, name: str) -> str:
    if action is None or not action.outputs or name in action.outputs or hasattr(dict, name):
        return ""
    return f"{action.name} has no output {name!r} (outputs: {', '.join(action.outputs)})"


def _pydantic_message(error: Any) -> str:
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


def _iter_steps(steps: list[Any]) -> Iterable[tuple[Loc, dict[str, Any]]]:
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        yield ("steps", index), step
        rollbacks = step.get("on_failure")
        if isinstance(rollbacks, list):
            for j, rollback in enumerate(rollbacks):
                if isinstance(rollback, dict):
                    yield ("steps", index, "on_failure", j), rollback


def _strings(value: Any, loc: Loc) -> Iterable[tuple[Loc, str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, (*loc, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, (*loc, index))
