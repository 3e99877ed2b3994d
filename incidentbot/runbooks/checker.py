"""Checking a runbook file's data, with the line of every problem.

The checker reports every problem, never just the first: what the models refuse (unknown or
missing keys, wrong types), duplicate step ids, unknown actions and action inputs, literal inputs
the action would refuse, expressions that do not compile or read what does not exist (an unknown
param, a step that does not exist or has not run yet), ``if_skipped`` outputs the action does
not have, and ``target`` naming no param. Each
:class:`Problem` prints as ``path:LINE: field: message``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from incidentbot.runbooks import expr_refs, expr_syntax
from incidentbot.runbooks.actions.base import Action
from incidentbot.runbooks.model_errors import model_error, pydantic_message
from incidentbot.runbooks.yaml_lines import Loc, Problem, format_loc


class ActionRegistry(Protocol):
    """What the checker and the loader need of the action registry."""

    def get(self, name: str) -> Action | None: ...

    def names(self) -> list[str]: ...


class Checker:
    """Checks the data of one runbook file; what is wrong is collected in ``problems``."""

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
        self.add(*model_error(error))

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
        if expr_syntax.is_template(target):  # a lock name built from params and vars
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
                if expr_syntax.is_template(text):
                    self.check_expression(where, text, scope, condition=False)
        when = step.get("when")
        if isinstance(when, str):
            self.check_expression((*loc, "when"), when, scope, condition=True)
        skipped = step.get("if_skipped")
        if isinstance(skipped, dict):
            self.check_if_skipped((*loc, "if_skipped"), skipped, scope)
        wait = step.get("wait_until")
        if isinstance(wait, dict) and isinstance(wait.get("check"), str):
            self.check_expression(
                (*loc, "wait_until", "check"), wait["check"], scope, condition=True, wait=True
            )

    def check_if_skipped(self, loc: Loc, skipped: dict[str, Any], scope: _Scope) -> None:
        """``if_skipped`` names outputs of the step's own action; its expressions read what
        the step's ``with`` may read."""
        for name in skipped:
            problem = _output_problem(scope.action, str(name))
            if problem:
                self.add((*loc, str(name)), problem)
        for where, text in _strings(skipped, loc):
            if expr_syntax.is_template(text):
                self.check_expression(where, text, scope, condition=False)

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
        literal = {k: v for k, v in known.items() if not expr_syntax.has_template(v)}
        try:
            model.model_validate(literal)
        except ValidationError as exc:
            for error in exc.errors():
                where = error["loc"]
                if not where:
                    # A check across inputs: only meaningful when none is an expression.
                    if len(literal) == len(known):
                        self.add((*loc, "with"), pydantic_message(error))
                    continue
                name = accepted.get(str(where[0]), str(where[0]))
                if error["type"] == "missing":
                    if name in given:
                        continue  # given as an expression: checked when the step runs
                    self.add((*loc, "with"), f"missing required input {name!r} for {action.name}")
                elif error["type"] != "extra_forbidden":
                    self.add((*loc, "with", *where), pydantic_message(error))

    def check_expression(
        self, loc: Loc, text: str, scope: _Scope, *, condition: bool, wait: bool = False
    ) -> None:
        try:
            names = expr_refs.variables(text, condition=condition)
            paths = expr_refs.references(text, condition=condition)
        except expr_syntax.ExpressionError as exc:
            self.add(loc, exc.message)
            return
        allowed = expr_refs.WAIT_VARIABLES if wait else expr_refs.VARIABLES
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
        if root == "incident" and rest and rest[0] not in expr_refs.INCIDENT_ATTRIBUTES:
            return (
                f"incident has no {rest[0]!r} "
                f"(incident: {', '.join(expr_refs.INCIDENT_ATTRIBUTES)})"
            )
        if root == "run" and rest and rest[0] not in expr_refs.RUN_ATTRIBUTES:
            return f"run has no {rest[0]!r} (run: {', '.join(expr_refs.RUN_ATTRIBUTES)})"
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
        if rest[1] not in expr_refs.STEP_ATTRIBUTES:
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
