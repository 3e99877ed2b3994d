"""Which runbook files passed the full check already, so that ``serve`` need not check them again.

Checking a runbook (:mod:`incidentbot.runbooks.checker`: every expression compiled and its
references followed, every literal input validated, the key guard) is most of the time it
takes to load one, and the result depends only on the file's text and on the code that checks
it. ``serve`` therefore remembers, in ``<data_dir>/runbook-checks.json``, the SHA-256 of each
file that passed, under a *fingerprint* of that code: the bot's version, the libraries the
check uses, and the text of every module of :mod:`incidentbot.runbooks` and of the modules
defining the registered actions (so a changed action pack, or a checkout edited without a new
version, is checked again). A file whose text is remembered under the current fingerprint is
only parsed and read into its model; any other file is checked in full, as before. Only passes
are remembered: a file with problems is checked, and its problems reported, at every start.

The file is trusted as much as the data directory that holds it (the SQLite database lives
there too). A file that cannot be read or parsed is ignored; one that cannot be written is
not an error (the next start checks again). It is replaced atomically, so a process killed
while writing leaves the previous one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
import pydantic
import yaml

import incidentbot
from incidentbot.runbooks.checker import ActionRegistry

log = logging.getLogger(__name__)

FILE_NAME = "runbook-checks.json"
_PACKAGE = Path(__file__).resolve().parent  # incidentbot/runbooks
_LIBRARIES = (pydantic, jinja2, yaml)  # what the check runs on, besides the bot's own code


def digest(text: str) -> str:
    """The key of a runbook file's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(actions: ActionRegistry) -> str:
    """What the result of a check depends on besides the file's text (see the module)."""
    h = hashlib.sha256()
    h.update(f"incidentbot {incidentbot.__version__}; python {sys.version}\n".encode())
    for library in _LIBRARIES:
        h.update(f"{library.__name__} {getattr(library, '__version__', '?')}\n".encode())
    files = set(_PACKAGE.rglob("*.py"))  # the checker, and the built-in actions
    for action in _actions(actions):
        h.update(f"action {action.name} {_describe(type(action))}\n".encode())
        for kind in (type(action), getattr(action, "Inputs", None)):
            source = _source_of(kind)
            if source is not None:
                files.add(source)
    for path in sorted(files):
        try:
            h.update(f"{path}\n".encode() + path.read_bytes())
        except OSError:
            h.update(f"{path} unreadable\n".encode())
    return h.hexdigest()


def _actions(actions: ActionRegistry) -> list[Any]:
    """The registered actions but the built-in ones, sorted by name: the built-ins' code is
    among the package's files already, and asking a registry that has not loaded them yet
    (:class:`~incidentbot.runbooks.actions.ActionRegistry`) would import them at every start,
    which the cache is there to spare."""
    here = getattr(actions, "registered_here", None)
    found = here() if here is not None else None
    if found is None:
        found = [a for a in map(actions.get, actions.names()) if a is not None]
    builtin = f"{__package__}."
    others = [a for a in found if not type(a).__module__.startswith(builtin)]
    return sorted(others, key=lambda a: str(a.name))


def _describe(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _source_of(kind: Any) -> Path | None:
    module = sys.modules.get(getattr(kind, "__module__", ""), None)
    source = getattr(module, "__file__", None)
    return Path(source).resolve() if source else None


class CheckCache:
    """The digests of the files that passed under :attr:`fingerprint`."""

    def __init__(self, path: Path, fingerprint: str, passed: Iterable[str] = ()):
        self.path = path
        self.fingerprint = fingerprint
        self._stored = set(passed)
        self._seen: set[str] = set()  # passed in this load, stored or not

    @classmethod
    def open(cls, data_dir: Path, actions: ActionRegistry) -> CheckCache:
        """The cache of ``data_dir`` for the check as ``actions`` and this code make it."""
        path = Path(data_dir) / FILE_NAME
        current = fingerprint(actions)
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls(path, current)
        if not isinstance(stored, dict) or stored.get("fingerprint") != current:
            return cls(path, current)
        passed = stored.get("passed")
        if not isinstance(passed, list):
            return cls(path, current)
        return cls(path, current, (p for p in passed if isinstance(p, str)))

    def passed(self, key: str) -> bool:
        """Whether the file with this digest passed the check under this fingerprint."""
        if key in self._stored:
            self._seen.add(key)
            return True
        return False

    def add(self, key: str) -> None:
        """The file with this digest just passed the full check."""
        self._seen.add(key)

    def save(self) -> None:
        """Keep the files that passed in this load (and only those: a file since changed or
        removed is forgotten). Best effort, atomic."""
        if self._seen == self._stored:
            return
        body = json.dumps({"fingerprint": self.fingerprint, "passed": sorted(self._seen)})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".runbook-checks.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(body)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            log.info("runbook check results not kept in %s: %s", self.path, exc)
            return
        self._stored = set(self._seen)
