"""Runbook actions: the registry of what a step's ``uses:`` may name, the built-ins, and
third-party action packs found through the ``incidentbot.actions`` entry point group.

The default :data:`registry` holds the built-in actions (``http.request``, ``shell.exec``,
``wait.sleep``, ``slack.post``, ``incident.note``). Packs are added with
:func:`load_entry_points`; a pack that fails to import or names something that is not an
action is logged and skipped, so a broken plugin never keeps the bot from starting.

A pack declares, in its ``pyproject.toml``::

    [project.entry-points."incidentbot.actions"]
    lab = "incidentbot_lab.actions:ACTIONS"   # an Action subclass, an iterable, or a callable
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel

from incidentbot.runbooks.actions.base import Action, ActionContext, IncidentInfo, Services

__all__ = [
    "Action",
    "ActionContext",
    "ActionRegistry",
    "IncidentInfo",
    "PluginError",
    "Services",
    "load_entry_points",
    "registry",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "incidentbot.actions"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*(?:\.[A-Za-z0-9][A-Za-z0-9_-]*)+$")


class PluginError(Exception):
    """An entry point did not give usable actions (the message says what it gave instead)."""


def _describe(obj: object) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def as_action(obj: object) -> Action:
    """An :class:`Action` instance from an Action subclass or instance; ``TypeError`` saying
    what is wrong otherwise."""
    if isinstance(obj, type) and issubclass(obj, Action):
        instance = obj()
    elif isinstance(obj, Action):
        instance = obj
    else:
        raise TypeError(f"{obj!r} is not an Action subclass or instance")
    name = getattr(instance, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"action {_describe(instance)} has no name: set the class attribute `name`")
    if not _NAME.match(name):
        raise TypeError(
            f"action name {name!r} of {_describe(instance)} is not valid: use dotted words such "
            "as `lab.restart_node` (letters, digits, _ and -)"
        )
    inputs = getattr(instance, "Inputs", None)
    if not (isinstance(inputs, type) and issubclass(inputs, BaseModel)):
        raise TypeError(f"action {name!r}: Inputs must be a pydantic model class")
    return instance


class ActionRegistry:
    """Action names to :class:`Action` instances. Thread-safe.

    ``later`` gives actions registered the first time the registry is used (any method but
    :meth:`registered_here`), as if they had been given in ``actions``: the default registry
    imports the built-in actions (and the HTTP client most of them use) only when a runbook is
    checked, planned or run, not at every start of the bot."""

    def __init__(
        self,
        actions: Iterable[type[Action] | Action] = (),
        *,
        later: Callable[[], Iterable[type[Action] | Action]] | None = None,
    ) -> None:
        self._actions: dict[str, Action] = {}
        self._lock = threading.Lock()
        self._later = later
        self._later_lock = threading.Lock()
        for action in actions:
            self.register(action)

    def _load_later(self) -> None:
        if self._later is None:
            return
        with self._later_lock:
            later = self._later
            if later is None:  # another thread loaded them meanwhile
                return
            items = [as_action(item) for item in later()]  # an import error: tried again later
            with self._lock:
                for instance in items:
                    self._actions.setdefault(instance.name, instance)
                self._later = None

    def registered_here(self) -> list[Action] | None:
        """The actions registered by name (packs, tests), without loading the ones given
        ``later``; None once those are loaded (then every action is known: :meth:`names`)."""
        with self._lock:
            if self._later is not None:
                return list(self._actions.values())
        return None

    def register(self, action: type[Action] | Action, *, replace: bool = False) -> Action:
        """Register an Action subclass (instantiated without arguments) or instance under its
        ``name``. A name already taken by another action is refused unless ``replace=True``;
        registering the same class again is allowed and changes nothing."""
        self._load_later()
        instance = as_action(action)
        with self._lock:
            existing = self._actions.get(instance.name)
            if existing is not None and not replace:
                if existing is instance or (isinstance(action, type) and type(existing) is action):
                    return existing
                raise ValueError(
                    f"action {instance.name!r} is already registered (by "
                    f"{_describe(existing)}); {_describe(instance)} cannot take the same name "
                    "unless registered with replace=True"
                )
            self._actions[instance.name] = instance
        return instance

    def unregister(self, name: str) -> Action | None:
        """Remove ``name``; returns the action it named, if any."""
        self._load_later()
        with self._lock:
            return self._actions.pop(name, None)

    def get(self, name: str) -> Action | None:
        self._load_later()
        with self._lock:
            return self._actions.get(name)

    def names(self) -> list[str]:
        self._load_later()
        with self._lock:
            return sorted(self._actions)

    def __contains__(self, name: object) -> bool:
        self._load_later()
        with self._lock:
            return name in self._actions

    def __len__(self) -> int:
        self._load_later()
        with self._lock:
            return len(self._actions)


def _is_action(obj: object) -> bool:
    return isinstance(obj, Action) or (isinstance(obj, type) and issubclass(obj, Action))


def _actions_of(obj: Any, entry: EntryPoint) -> list[type[Action] | Action]:
    """What an entry point's object gives: an Action class or instance, an iterable of them,
    or a callable returning either. Each is checked (as :func:`as_action` does)."""
    if not _is_action(obj) and callable(obj) and not isinstance(obj, type):
        obj = obj()
    if _is_action(obj):
        items = [obj]
    elif isinstance(obj, str | bytes | dict) or not isinstance(obj, Iterable):
        raise PluginError(
            f"{entry.value} gave {type(obj).__name__}, not an Action subclass, an iterable of "
            "them, or a callable returning them"
        )
    else:
        items = list(obj)
    if not items:
        raise PluginError(f"{entry.value} gave no actions")
    for item in items:
        try:
            as_action(item)
        except TypeError as exc:
            raise PluginError(f"{entry.value}: {exc}") from None
    return items


def load_entry_points(registry: ActionRegistry, group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Register the actions of every installed pack in ``group``; returns the names added.

    A pack that fails to import, raises, or gives something that is not an action is logged
    (with its entry point name and the error) and skipped; an action whose name is taken is
    logged and skipped on its own. Nothing here raises."""
    added: list[str] = []
    try:
        found = sorted(entry_points(group=group), key=lambda ep: (ep.name, ep.value))
    except Exception:  # a broken distribution's metadata must not stop the bot
        log.exception("could not list the action packs of entry point group %s", group)
        return added
    for entry in found:
        try:
            actions = _actions_of(entry.load(), entry)
        except (Exception, SystemExit) as exc:
            log.error(
                "action pack %r (%s) skipped: %s: %s",
                entry.name,
                entry.value,
                type(exc).__name__,
                exc,
            )
            continue
        for item in actions:
            already = registry.get(str(getattr(item, "name", "")))
            try:
                action = registry.register(item)
            except (ValueError, TypeError) as exc:
                log.error("action pack %r (%s): %s; skipped", entry.name, entry.value, exc)
                continue
            if action is already:  # the same pack loaded twice
                continue
            added.append(action.name)
            log.info("action %s registered from pack %r (%s)", action.name, entry.name, entry.value)
    return added


def _builtin_actions() -> list[type[Action]]:
    from incidentbot.runbooks.actions.builtin import BUILTIN_ACTIONS

    return list(BUILTIN_ACTIONS)


def _default_registry() -> ActionRegistry:
    return ActionRegistry(later=_builtin_actions)


registry = _default_registry()
